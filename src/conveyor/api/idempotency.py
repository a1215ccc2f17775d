"""`Idempotency-Key` on the admin API's POSTs: one request acts, the others get its answer.

The first request with a key reserves it for its tenant (a row that a
concurrent request with the key fails to insert), acts, and stores its
answer; a request sent again with the key gets the stored status and body
back with `Idempotent-Replayed: true`, and nothing is done a second time.
While the first is in flight the others get 409 `idempotency_key_in_use`.
A key is bound to its request (a SHA-256 of method, path and body, byte for
byte): sent with another it is 422 `idempotency_key_reused`.

Only successes are stored. A refused (4xx) or failed (5xx, exception)
request releases the key: the API refuses before it writes, or its write
rolled back, so a retry after fixing the cause must be allowed to act. A
reservation with no answer after `STALE_AFTER` seconds was left by a server
that died mid-request; the next request with the key takes it over.

`POST /runners/register` does not take part: its answer holds the runner's
token, which the server keeps only as a digest, so it could not be replayed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from conveyor.api.deps import Invalid, KeyInUse, KeyReused, admin, services
from conveyor.engine.records import KeyedRequest
from conveyor.engine.store import Store
from conveyor.errors import StoreError

HEADER = "idempotency-key"
MAX_KEY = 255
STALE_AFTER = 60.0
"""Seconds after which an unanswered reservation is taken over. Admin POSTs answer in well
under a second; the one that can take longer, registering a workflow whose git read hangs,
is an upsert, so acting twice after a takeover does no harm."""

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


def idempotency_key(request: Request) -> str | None:
    """The request's key, checked: printable, at most 255 characters."""
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not key or len(key) > MAX_KEY or not key.isprintable():
        raise Invalid(f"Idempotency-Key must be 1 to {MAX_KEY} printable characters")
    return key


def fingerprint(method: str, target: str, body: bytes) -> str:
    """What binds a key to its request: SHA-256 (hex) of method, path (and query) and body."""
    head = json.dumps([method, target]).encode()  # JSON escapes newlines: no ambiguity
    return hashlib.sha256(head + b"\n" + body).hexdigest()


class IdempotentRoute(APIRoute):
    """A route whose POST honours `Idempotency-Key` (admin tokens only)."""

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()
        if "POST" not in (self.methods or ()):
            return handler

        async def idempotent(request: Request) -> Response:
            key = idempotency_key(request)
            if key is None:
                return await handler(request)
            tenant_id = (await admin(request)).tenant_id
            store = services(request).store
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            mine = fingerprint(request.method, target, await request.body())
            found = await store.reserve_response(tenant_id, key, mine, STALE_AFTER)
            if found.fingerprint != mine:
                raise KeyReused(
                    f"Idempotency-Key {key!r} was first sent with another request "
                    "(method, path or body); use a new key for a new request"
                )
            if found.reservation is None:
                return _replay(key, found)
            return await _act(handler, request, store, tenant_id, key, found.reservation)

        return idempotent


def _replay(key: str, found: KeyedRequest) -> Response:
    """The stored answer of the request that holds the key; KeyInUse while it has none."""
    if found.status is None or found.body is None:
        raise KeyInUse(
            f"a request with Idempotency-Key {key!r} is still in progress; "
            "retry shortly to get its answer"
        )
    return Response(
        found.body,
        found.status,
        media_type="application/json",
        headers={"Idempotent-Replayed": "true"},
    )


async def _act(
    handler: Handler,
    request: Request,
    store: Store,
    tenant_id: str,
    key: str,
    reservation: str,
) -> Response:
    """The route's answer; stored for the key when it is a success, else the key released."""
    try:
        response = await handler(request)
    except Exception:
        # The route's error is the answer; a key not released goes stale and is taken over.
        with contextlib.suppress(StoreError):
            await store.release_response(tenant_id, key, reservation)
        raise
    if not 200 <= response.status_code < 300:
        await store.release_response(tenant_id, key, reservation)
        return response
    body = bytes(response.body).decode("utf-8")
    # The request acted: its answer goes out even when it cannot be stored (the key then
    # stays reserved until it is stale, rather than a retry acting again at once).
    with contextlib.suppress(StoreError):
        await store.keep_response(tenant_id, key, reservation, response.status_code, body)
    return response
