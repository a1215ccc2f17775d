"""`Idempotency-Key` on the admin API's POSTs: the first success is stored and replayed.

A client that retries a POST with the same key (same method and path, same
tenant) gets the stored status and body back, with `Idempotent-Replayed:
true`, and nothing is done a second time. Only successes are stored: a
refused request changed nothing, so retrying it after fixing the cause must
be allowed to act. Two requests racing with one key may both act; dispatch
closes that gap by handing the key on to the store, which creates one run per
key.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from conveyor.api.deps import Invalid, admin, services

HEADER = "idempotency-key"
MAX_KEY = 255


def idempotency_key(request: Request) -> str | None:
    """The request's key, checked: printable, at most 255 characters."""
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not key or len(key) > MAX_KEY or not key.isprintable():
        raise Invalid(f"Idempotency-Key must be 1 to {MAX_KEY} printable characters")
    return key


class IdempotentRoute(APIRoute):
    """A route whose POST honours `Idempotency-Key` (admin tokens only)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if "POST" not in (self.methods or ()):
            return handler

        async def idempotent(request: Request) -> Response:
            key = idempotency_key(request)
            if key is None:
                return await handler(request)
            principal = await admin(request)
            store = services(request).store
            method, path = request.method, request.url.path
            recalled = await store.recall_response(principal.tenant_id, key, method, path)
            if recalled is not None:
                status, body = recalled
                return Response(
                    body,
                    status,
                    media_type="application/json",
                    headers={"Idempotent-Replayed": "true"},
                )
            response = await handler(request)
            if 200 <= response.status_code < 300:
                body = bytes(response.body).decode("utf-8")
                await store.remember_response(
                    principal.tenant_id, key, method, path, response.status_code, body
                )
            return response

        return idempotent
