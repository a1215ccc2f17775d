"""Control-plane throughput: a server and N runner processes draining no-op jobs.

    python bench/throughput.py [--runners 4] [--jobs 400] [--samples 30] [--backend sqlite|postgres|both]

Prints, per backend: jobs/s for `--jobs` one-step jobs dispatched at once;
dispatch-to-first-step latency p50/p99 over `--samples` single dispatches on
an idle system (the step's recorded start minus the moment before the
dispatch request); and database transactions per job: on PostgreSQL those
that write (transaction ids assigned) and all commits of a database used by
nothing else (`pg_stat_database.xact_commit`, reads included); on SQLite
the write transactions the server counts (`GET /metrics`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from tests.service.cluster import Runner, Server
from workload import NOOP, PG_ADMIN, create_database, drop_database


class Dispatcher:
    """Sends one dispatch request again and again on a kept-alive connection.

    The client shares the two cores with what it measures: httpx spent about 1 ms
    of CPU a request here, http.client 0.3 ms, this a tenth of that (the request's
    bytes are made once; the answer is read by its Content-Length).
    """

    def __init__(self, port: int, path: str, authorization: str) -> None:
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        body = b'{"inputs": {}}'
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {authorization}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self._request = head.encode() + body
        self._pending = b""

    def dispatch(self) -> str:
        """-> the new run's id."""
        self._sock.sendall(self._request)
        while b"\r\n\r\n" not in self._pending:
            self._pending += self._receive()
        head, _, rest = self._pending.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 202"):
            raise SystemExit(f"dispatch failed: {head[:200]!r}")
        found = re.search(rb"(?im)^content-length: *(\d+)", head)
        if found is None:
            raise SystemExit(f"dispatch answer without a Content-Length: {head[:200]!r}")
        length = int(found[1])
        while len(rest) < length:
            rest += self._receive()
        self._pending = rest[length:]
        return str(json.loads(rest[:length])["run_id"])

    def close(self) -> None:
        self._sock.close()

    def _receive(self) -> bytes:
        data = self._sock.recv(65536)
        if not data:
            raise SystemExit("the server closed the connection")
        return data


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def wait_done(api: httpx.Client, run_ids: list[str], timeout: float = 600) -> None:
    """Wait for every run, loading the server being measured as little as possible: runs
    end roughly in the order they were dispatched, so wait for the last one, then count
    the completed runs in pages of the run list until all are there."""
    deadline = time.monotonic() + timeout
    while api.get(f"/api/v1/runs/{run_ids[-1]}").json().get("status") != "completed":
        if time.monotonic() > deadline:
            raise SystemExit(f"run {run_ids[-1]} did not complete")
        time.sleep(0.05)
    wanted = set(run_ids)
    while True:
        done: set[str] = set()
        cursor = None
        while True:
            params = {"status": "completed", "limit": 200, **({"cursor": cursor} if cursor else {})}
            page = api.get("/api/v1/runs", params=params).json()
            done.update(run["id"] for run in page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        if wanted <= done:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"{len(wanted - done)} run(s) did not complete")
        time.sleep(0.1)


def first_step_started(api: httpx.Client, run_id: str) -> float:
    while True:
        jobs = api.get(f"/api/v1/runs/{run_id}/jobs").json()["items"]
        if jobs and jobs[0]["status"] in ("running", "completed", "failed"):
            job = api.get(f"/api/v1/jobs/{jobs[0]['id']}").json()
            if job["steps"] and job["steps"][0]["started_at"]:
                return float(job["steps"][0]["started_at"])
        time.sleep(0.002)


def busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (Linux's /proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def process_seconds(pid: int, *, children: bool = False) -> float:
    """CPU seconds used by one process (user + system), and with `children` by the
    children it has waited for (a runner's steps)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def runners_seconds(agents: list[Runner]) -> tuple[float, float]:
    """CPU seconds used by the runner processes and the steps they have run, and by
    the runner processes alone."""
    pids = [a.proc.pid for a in agents if a.proc]
    return (
        sum(process_seconds(pid, children=True) for pid in pids),
        sum(process_seconds(pid) for pid in pids),
    )


def database_seconds() -> float:
    """CPU seconds used so far by the PostgreSQL processes that are alive now."""
    total = 0.0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                if f.read(64).split(" ", 2)[1] != "(postgres)":
                    continue
            total += process_seconds(int(entry.name))
        except (OSError, IndexError):
            continue  # gone meanwhile
    return total


def server_writes(api: httpx.Client) -> int:
    """The write transactions the server has committed (its `/metrics`)."""
    text = api.get("/metrics").text
    found = re.search(r"^conveyor_store_write_transactions_total (\d+)$", text, re.MULTILINE)
    if found is None:
        raise SystemExit("the server's /metrics has no conveyor_store_write_transactions_total")
    return int(found[1])


def transaction_counts(database: str) -> tuple[int, int]:
    """(transactions that wrote, all committed transactions) so far.

    PostgreSQL assigns a transaction id only to a transaction that writes, so
    the growth of `txid_current()` counts writes cluster-wide (nothing else
    writes here; the call's own id is subtracted by the caller);
    `xact_commit` counts every commit of the database, reads included.
    """
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        row = conn.execute(
            "SELECT txid_current(), xact_commit FROM pg_stat_database WHERE datname = %s",
            (database,),
        ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def measure(backend: str, runners: int, jobs: int, samples: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="conveyor-throughput-"))
    database, url = create_database() if backend == "postgres" else ("", None)
    server = Server(tmp / "data", url, lease_ttl=30.0).start()
    agents = [Runner(server, tmp / f"runner-{i}").start() for i in range(runners)]
    try:
        with server.api() as api:
            wf = api.post("/api/v1/workflows", json={"path": "noop.yml", "source": NOOP}).json()
            dispatch = f"/api/v1/workflows/{wf['id']}/dispatch"
            time.sleep(1.0)  # let the runners register and start polling

            latencies = []
            for _ in range(samples):
                before = time.time()
                run_id = api.post(dispatch, json={"inputs": {}}).json()["run_id"]
                latencies.append(first_step_started(api, run_id) - before)
                wait_done(api, [run_id])
                time.sleep(0.05)

            counts_before = transaction_counts(database) if url else (server_writes(api), 0)
            run_ids: list[str] = []
            lock = threading.Lock()

            def submit(count: int) -> None:
                dispatcher = Dispatcher(server.port, dispatch, api.headers["authorization"])
                try:
                    for _ in range(count):
                        run_id = dispatcher.dispatch()
                        with lock:
                            run_ids.append(run_id)
                finally:
                    dispatcher.close()

            assert server.proc is not None
            server_before, busy_before = process_seconds(server.proc.pid), busy_seconds()
            runners_before = runners_seconds(agents)
            client_before = process_seconds(os.getpid())
            database_before = database_seconds() if url else 0.0
            started = time.monotonic()
            threads = [threading.Thread(target=submit, args=(jobs // 4,)) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wait_done(api, run_ids)
            elapsed = time.monotonic() - started
            server_cpu = process_seconds(server.proc.pid) - server_before
            machine_cpu = busy_seconds() - busy_before
            runners_after = runners_seconds(agents)
            runners_cpu = runners_after[0] - runners_before[0]
            agents_cpu = runners_after[1] - runners_before[1]
            client_cpu = process_seconds(os.getpid()) - client_before
            database_cpu = database_seconds() - database_before if url else 0.0
            counts_after = transaction_counts(database) if url else (server_writes(api), 0)
            writes = counts_after[0] - counts_before[0] - (1 if url else 0)
            commits = counts_after[1] - counts_before[1]
        print(
            f"[{backend}] {runners} runners, {len(run_ids)} one-step jobs: "
            f"{len(run_ids) / elapsed:.1f} jobs/s ({elapsed:.2f} s)"
        )
        per_job = 1000 / len(run_ids)
        print(
            f"[{backend}] CPU per job: {machine_cpu * per_job:.1f} ms on the machine "
            f"({os.cpu_count()} cores); of it the server {server_cpu * per_job:.1f} ms, "
            f"the runners and their steps {runners_cpu * per_job:.1f} ms "
            f"(the runners alone {agents_cpu * per_job:.1f} ms)"
            + (f", PostgreSQL {database_cpu * per_job:.1f} ms" if url else "")
            + f", this benchmark's client {client_cpu * per_job:.1f} ms"
        )
        print(
            f"[{backend}] dispatch to first step: p50 {percentile(latencies, 0.5) * 1000:.1f} ms, "
            f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms ({samples} samples, idle)"
        )
        if url:
            print(
                f"[{backend}] database transactions per job: {writes / len(run_ids):.1f} that "
                f"write; {commits / len(run_ids):.1f} commits in all (reads, polling and this "
                "benchmark's own status queries included)"
            )
        else:
            print(
                f"[{backend}] database transactions per job: {writes / len(run_ids):.1f} that "
                "write (the server's count; its reads, one statement each, are not counted)"
            )
    finally:
        for agent in agents:
            agent.stop()
        server.kill()
        shutil.rmtree(tmp, ignore_errors=True)
        if url:
            drop_database(database)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runners", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    for backend in ("sqlite", "postgres") if args.backend == "both" else (args.backend,):
        measure(backend, args.runners, args.jobs, args.samples)
    return 0


if __name__ == "__main__":
    sys.exit(main())
