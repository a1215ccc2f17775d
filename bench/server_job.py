"""CPU the server spends on one-step jobs, with the HTTP layer but no sockets.

    python bench/server_job.py [--jobs 600] [--rounds 3] [--backend sqlite|postgres]

One `conveyor serve` process's parts (the API application, the scheduler
loop) run in this process on one event loop; the API is called as ASGI,
as uvicorn would after parsing a request. Each job is what a busy runner
makes of it: a dispatch, then the whole job's report, which takes the next
job (`"next": true`). Prints the process's CPU per job: the application,
the store and its driver, the scheduler; not uvicorn's parsing, the
sockets, or PostgreSQL's own work.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from workload import NOOP, create_database, drop_database

from conveyor.runner.agent import default_labels
from conveyor.service.serve import ServeOptions, Server, ensure_tokens
from conveyor.store import open_store


class Client:
    """Calls an ASGI application as uvicorn would, without a socket."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def post(self, path: str, body: Any, token: str) -> tuple[int, Any]:
        raw = json.dumps(body).encode()
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", b"127.0.0.1"),
                (b"authorization", f"Bearer {token}".encode()),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(raw)).encode()),
            ],
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 8080),
        }
        answer: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": raw, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
            else:
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        return answer["status"], json.loads(b"".join(chunks) or b"null")


def report(job: dict[str, Any]) -> dict[str, Any]:
    """A runner's whole report of a one-step job that printed one line, taking the next."""
    now = time.time()
    return {
        "epoch": job["epoch"],
        "seq": 1,
        "next": True,
        "events": [
            {"type": "job_start"},
            {"type": "step_start", "index": 0, "name": "Run true", "at": now},
            {"type": "logs", "lines": [[0, "ok"]]},
            {
                "type": "step_end",
                "index": 0,
                "name": "Run true",
                "outcome": "success",
                "conclusion": "success",
                "at": now,
            },
            {"type": "job_end", "conclusion": "success"},
        ],
    }


async def drain(jobs: int, data_dir: str, url: str | None) -> float:
    store = await open_store(url, data_dir=data_dir)
    server = Server(store, ServeOptions(data_dir=data_dir, database_url=url, cron=False))
    tokens = await ensure_tokens(store, data_dir)
    admin = Path(tokens.admin_token_path).read_text().strip()
    registration = Path(tokens.runner_token_path).read_text().strip()
    loops = [asyncio.ensure_future(loop()) for loop in server.loops()]
    client = Client(server.app)
    try:
        _, registered = await client.post(
            "/api/v1/runners/register", {"name": "bench", "labels": default_labels()}, registration
        )
        runner = registered["token"]
        _, workflow = await client.post(
            "/api/v1/workflows", {"path": "noop.yml", "source": NOOP}, admin
        )
        dispatch = f"/api/v1/workflows/{workflow['id']}/dispatch"
        await client.post(dispatch, {"inputs": {}}, admin)
        _, polled = await client.post("/api/v1/runners/poll", {"wait": 5}, runner)
        job = polled["job"]
        started = time.process_time()
        for n in range(jobs):
            status, _ = await client.post(dispatch, {"inputs": {}}, admin)
            assert status == 202, status
            status, answer = await client.post(
                f"/api/v1/jobs/{job['job_id']}/report", report(job), runner
            )
            assert status == 200 and answer["job"] is not None, (n, status, answer)
            job = answer["job"]
            await asyncio.sleep(0)  # the scheduler's turn, as between requests
        return time.process_time() - started
    finally:
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        await store.close()


def one_round(jobs: int, backend: str) -> float:
    with tempfile.TemporaryDirectory(prefix="conveyor-server-job-") as tmp:
        if backend == "sqlite":
            return asyncio.run(drain(jobs, tmp, None))
        database, url = create_database()
        try:
            return asyncio.run(drain(jobs, tmp, url))
        finally:
            drop_database(database)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    per_job = [one_round(args.jobs, args.backend) * 1000 / args.jobs for _ in range(args.rounds)]
    print(
        f"[{args.backend}] server CPU per one-step job, in process: "
        f"{statistics.median(per_job):.3f} ms "
        f"(rounds: {', '.join(f'{c:.3f}' for c in per_job)})"
    )


if __name__ == "__main__":
    main()
