"""The SQLite store's plumbing: transactions, error translation, outbox rows, refusals.

Every write is a `BEGIN IMMEDIATE` transaction, so SQLite's write lock
serialises writers across connections and processes; the compare-and-set
updates still spell out their conditions so the same SQL holds on
PostgreSQL. One lock guards the connection, so a store may be shared
between threads. A committed transaction that wrote an outbox row wakes
this store's `wait_for_event` callers.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from conveyor.engine.records import EventKind, JobRecord
from conveyor.engine.states import LEASED, JobStatus
from conveyor.errors import Conflict, LeaseLost, NotFound, StoreError
from conveyor.store import rows
from conveyor.store.signal import Signals

LEASED_IN = rows.in_list(LEASED)
"""`('acquired', 'running')`: the statuses in which runner writes are accepted."""

_INSERT_EVENT = "INSERT INTO outbox (kind, run_id, job_id, data, created_at) VALUES (?, ?, ?, ?, ?)"
# The outbox row of a runner write doubles as its fence: no row unless the epoch holds the lease.
_INSERT_FENCED_EVENT = f"""
    INSERT INTO outbox (kind, run_id, job_id, data, created_at)
    SELECT ?, run_id, id, ?, ? FROM jobs
    WHERE id = ? AND lease_epoch = ? AND status IN {LEASED_IN}
"""
_JOBS_OF_RUN = f"SELECT {rows.JOB_COLUMNS} FROM jobs WHERE run_id = ? ORDER BY rowid"


@contextmanager
def translated() -> Iterator[None]:
    """Turn the driver's exceptions into StoreError at the boundary."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreError(f"SQLite: {exc}") from exc
    except UnicodeEncodeError as exc:
        raise StoreError(f"text cannot be stored: {exc}") from exc


class SqliteBase:
    """One connection, the clock and the id source; the helpers every operation uses."""

    def __init__(
        self, db: sqlite3.Connection, clock: Callable[[], float], new_id: Callable[[], str]
    ) -> None:
        self._db = db
        self._clock = clock
        self._new_id = new_id
        self._lock = threading.Lock()
        self._signals = Signals()
        # The outbox rows the open transaction wrote: (kind, run id, data).
        self._emitted: list[tuple[str, str, Mapping[str, Any]]] = []
        self._commits = 0

    @property
    def transactions(self) -> int:
        """Write transactions committed through this store since it opened (for benchmarks)."""
        return self._commits

    def wake_waiters(self) -> None:
        self._signals.committed("scq")  # as if a commit concerned them all

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; any exception rolls all of it back."""
        db = self._db
        with self._lock, translated():
            self._emitted.clear()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            self._commits += 1
            if self._emitted:
                self._signals.committed(Signals.flags(self._emitted))

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock, translated():
            yield self._db

    def _emit(
        self,
        db: sqlite3.Connection,
        kind: EventKind,
        run_id: str,
        job_id: str | None,
        data: Mapping[str, Any],
        now: float,
    ) -> None:
        db.execute(_INSERT_EVENT, (kind.value, run_id, job_id, rows.dump(data), now))
        self._emitted.append((kind, run_id, data))

    @staticmethod
    def _refusal(
        db: sqlite3.Connection, job_id: str, action: str, epoch: int | None = None
    ) -> StoreError:
        """Why a job transition matched no row, read inside the same transaction."""
        row = db.execute("SELECT status, lease_epoch FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            return NotFound(f"job {job_id!r} not found")
        status, current = JobStatus(row[0]), row[1]
        if epoch is not None and (epoch != current or status not in LEASED):
            return LeaseLost(
                f"cannot {action} job {job_id!r}: epoch {epoch} does not hold its lease "
                f"(the job is {status}, lease epoch {current})"
            )
        return Conflict(f"cannot {action} job {job_id!r}: it is {status}")

    def _emit_fenced(
        self,
        db: sqlite3.Connection,
        kind: EventKind,
        job_id: str,
        epoch: int,
        data: Mapping[str, Any],
        now: float,
        action: str,
    ) -> None:
        """Write the job's outbox row if `epoch` holds its lease; else LeaseLost or NotFound."""
        values = (kind.value, rows.dump(data), now, job_id, epoch)
        if not db.execute(_INSERT_FENCED_EVENT, values).rowcount:
            raise self._refusal(db, job_id, action, epoch)
        self._emitted.append((kind, "", data))  # a step's: whose run matters to nobody

    @staticmethod
    def _jobs_of(db: sqlite3.Connection, run_id: str) -> list[JobRecord]:
        return [rows.job(row) for row in db.execute(_JOBS_OF_RUN, (run_id,))]

    @staticmethod
    def _job_exists(db: sqlite3.Connection, job_id: str) -> bool:
        return db.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is not None
