"""GitHub webhooks: verify the signature, then turn push and pull_request events into runs.

GitHub signs each delivery with `X-Hub-Signature-256: sha256=<hex>`, the
HMAC-SHA256 of the raw body under the webhook's secret; it is compared in
constant time before the body is even parsed. `ping` is answered 200, other
events 202 and ignored. The repository is found by `repository.full_name`;
`X-GitHub-Delivery` goes to the engine, which starts one set of runs per
delivery however often GitHub redelivers it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse

from conveyor.api.deps import Invalid, Unauthorized, services
from conveyor.api.routes import API
from conveyor.api.schemas import RunsTriggeredOut
from conveyor.errors import NotFound

router = APIRouter(prefix=f"{API}/webhooks", tags=["webhooks"])

EVENTS = ("push", "pull_request")
MAX_DELIVERY_ID = 200
_PREFIX = "sha256="


def signature_matches(secret: str, body: bytes, header: str) -> bool:
    """True when `header` is `sha256=` and the hex HMAC-SHA256 of `body` under `secret`."""
    if not header.startswith(_PREFIX):
        return False
    expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    given = header[len(_PREFIX) :].strip().lower()
    return hmac.compare_digest(expected.encode("ascii"), given.encode("utf-8", "replace"))


@router.post(
    "/github",
    status_code=202,
    responses={200: {"description": "ping answered"}, 202: {"model": RunsTriggeredOut}},
)
async def github(
    request: Request,
    x_github_event: Annotated[str | None, Header()] = None,
    x_github_delivery: Annotated[str | None, Header()] = None,
    x_hub_signature_256: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    svc = services(request)
    body = await request.body()
    secret = svc.settings.webhook_secret
    if not secret:
        raise Unauthorized("webhooks are refused: this server has no webhook secret configured")
    if not x_hub_signature_256:
        raise Unauthorized("missing X-Hub-Signature-256 header")
    if not signature_matches(secret, body, x_hub_signature_256):
        raise Unauthorized("X-Hub-Signature-256 does not match the body")
    if not x_github_event:
        raise Invalid("missing X-GitHub-Event header")
    if not x_github_delivery or len(x_github_delivery) > MAX_DELIVERY_ID:
        raise Invalid(f"X-GitHub-Delivery must be given, at most {MAX_DELIVERY_ID} characters")
    if x_github_event == "ping":
        return JSONResponse({"ok": True}, 200)
    if x_github_event not in EVENTS:
        return JSONResponse({"runs": [], "ignored": x_github_event}, 202)
    payload = _payload(body)
    full_name = _full_name(payload)
    tenant_id = svc.settings.webhook_tenant
    repository = await svc.store.find_repository(tenant_id, full_name)
    if repository is None:
        raise NotFound(f"repository {full_name!r} is not registered")
    runs = await svc.trigger(tenant_id, repository, x_github_event, payload, x_github_delivery)
    return JSONResponse(RunsTriggeredOut(runs=runs).model_dump(), 202)


def _payload(body: bytes) -> Mapping[str, Any]:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Invalid(f"webhook body is not JSON: {exc}") from None
    except RecursionError:
        raise Invalid("webhook body is nested too deeply") from None
    if not isinstance(payload, dict):
        raise Invalid("webhook body must be a JSON object")
    return payload


def _full_name(payload: Mapping[str, Any]) -> str:
    repository = payload.get("repository")
    name = repository.get("full_name") if isinstance(repository, Mapping) else None
    if not isinstance(name, str) or not name:
        raise Invalid("webhook payload has no repository.full_name string")
    return name
