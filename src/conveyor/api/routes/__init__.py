"""The API's routers, one per resource, each under `API`; `conveyor.api.app` serves them."""

API = "/api/v1"
