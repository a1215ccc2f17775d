"""The API's routers, one per resource; `conveyor.api.app` mounts them under /api/v1."""
