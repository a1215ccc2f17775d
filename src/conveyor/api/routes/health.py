"""`GET /healthz`: 200 while the process is up (for load balancers and scripts); `GET
/metrics`: this server's counters in Prometheus's text format."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from conveyor.api.deps import services

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request) -> str:
    """Counters since this server process started (no tenant's data: no token needed)."""
    writes = services(request).store.transactions
    return (
        "# HELP conveyor_store_write_transactions_total Write transactions this server "
        "committed.\n"
        "# TYPE conveyor_store_write_transactions_total counter\n"
        f"conveyor_store_write_transactions_total {writes}\n"
    )
