"""The machine's yardstick: a bare SKIP LOCKED job queue on PostgreSQL, no Conveyor in it.

    python bench/reference_queue.py [--workers 4] [--jobs 20000]

Issue 4 gives its targets beside a figure measured on its author's machine: a
bare Python SKIP LOCKED queue doing 2 800 three-statement jobs/s with 4
workers. This is that queue, so that a throughput figure from
bench/throughput.py can be read against the machine it ran on: this
workplace's machines differ two-fold in speed from one session to the next.

Each worker process takes a job and finishes it in three statements, each its
own transaction as a runner's calls are: claim (an UPDATE whose subquery picks
the oldest queued job FOR UPDATE SKIP LOCKED), start, finish.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workload import create_database, drop_database

_CLAIM = """
UPDATE queue SET state = 'acquired'
WHERE id = (SELECT id FROM queue WHERE state = 'queued' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING id
"""


def work(url: str, start: multiprocessing.synchronize.Event) -> None:
    """Drain the queue: claim, start and finish jobs until none is left."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        start.wait()
        while (row := conn.execute(_CLAIM).fetchone()) is not None:
            conn.execute("UPDATE queue SET state = 'running' WHERE id = %s", row)
            conn.execute("UPDATE queue SET state = 'done' WHERE id = %s", row)


def measure(url: str, workers: int, jobs: int) -> float:
    """-> jobs/s of `workers` processes draining `jobs` queued jobs."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE queue (id bigserial PRIMARY KEY, state text NOT NULL)")
        conn.execute("CREATE INDEX queue_queued ON queue (id) WHERE state = 'queued'")
        conn.execute(
            "INSERT INTO queue (state) SELECT 'queued' FROM generate_series(1, %s)", (jobs,)
        )
        conn.execute("VACUUM ANALYZE queue")
    start = multiprocessing.Event()
    processes = [multiprocessing.Process(target=work, args=(url, start)) for _ in range(workers)]
    for process in processes:
        process.start()
    time.sleep(0.5)  # every worker connected
    began = time.perf_counter()
    start.set()
    for process in processes:
        process.join()
    return jobs / (time.perf_counter() - began)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=20000)
    args = parser.parse_args()
    name, url = create_database()
    try:
        rate = measure(url, args.workers, args.jobs)
    finally:
        drop_database(name)
    print(
        f"bare SKIP LOCKED queue, {args.workers} workers, {args.jobs} three-statement jobs: "
        f"{rate:.0f} jobs/s (issue 4's machine: 2800)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
