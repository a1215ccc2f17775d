"""The PostgreSQL store's plumbing: connections, transactions, the outbox append, refusals.

Connections come from a small pool of psycopg `AsyncConnection`s in
autocommit mode, opened on demand on the event loop that uses the store and
reused most-recent first. Each sets `search_path` to the store's schema and
dumps Python text with NUL replaced by U+FFFD: PostgreSQL text cannot hold
NUL, and free text is already cleaned the same way on SQLite.

A write runs in one READ COMMITTED transaction (`_transact`), or, where
one statement does it all, as that statement alone (`_statement`). Compare-and-set
UPDATEs lock the rows they change, and runner writes that change no job row
lock it `FOR SHARE` first, so the reaper cannot take a lease back half-way
through them. A deadlock or serialization failure rolls the transaction
back whole and runs it again.

Outbox order. Ids come from an identity sequence, which alone hands them out
in the order transactions *draw* them, not the order they commit: if the
transaction holding id 8 commits before the one holding id 7, a consumer
reads 8, moves its cursor past 7 and never sees it. Two ways out were open:
order consumers by a commit-order column (an xid8 per row, read only below
the oldest running transaction's xid, with a cursor of two numbers), or
draw the ids in commit order. Conveyor does the latter because the cursor
stays one integer, as on SQLite: every transaction appends its outbox rows
as its last statement, after taking `pg_advisory_xact_lock` (one key per
schema), which it holds until it has committed. Ids are thus drawn one
transaction at a time, each after the previous one is visible, and
`id > cursor` never skips. The price is that the append and the commit of
state-changing transactions run one at a time; heartbeats and log appends
write no outbox row and take no turn. The same statement calls
`pg_notify('conveyor_outbox', '<schema>|<flags>')`, which PostgreSQL
delivers at commit; the flags say whom the commit concerns (`Signals.flags`;
a commit that concerns nobody notifies nobody), and listeners ignore the
other schemas' notifications.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager, contextmanager
from typing import Any, NamedTuple, TypeVar

import psycopg
from psycopg import AsyncRawCursor, errors, sql
from psycopg.adapt import Dumper
from psycopg.pq import TransactionStatus

from conveyor.engine.records import EventKind, JobRecord
from conveyor.engine.states import LEASED, JobStatus, is_terminal
from conveyor.errors import Conflict, LeaseLost, NotFound, StoreError
from conveyor.store import rows
from conveyor.store.signal import Signals

Connection = psycopg.AsyncConnection[tuple[Any, ...]]
Params = Sequence[Any] | Mapping[str, Any]
T = TypeVar("T")

CHANNEL = "conveyor_outbox"
LEASED_IN = rows.in_list(LEASED)
_TERMINAL_IN = rows.in_list(s for s in JobStatus if is_terminal(s))
ALL_OTHERS_ENDED = f"NOT EXISTS (SELECT 1 FROM others WHERE status NOT IN {_TERMINAL_IN})"
"""SQL: every row of `others` (a run's other jobs) has ended."""


def run_conclusion(job: str) -> str:
    """SQL: the scheduler's conclusion of a run whose last job `job` ends, over the rows of
    `others` (its other jobs): failure if any failed, else cancelled if any was, else
    success."""
    return f"""CASE
        WHEN {job}.conclusion = 'failure'
            OR EXISTS (SELECT 1 FROM others WHERE conclusion = 'failure') THEN 'failure'
        WHEN {job}.conclusion = 'cancelled'
            OR EXISTS (SELECT 1 FROM others WHERE conclusion = 'cancelled') THEN 'cancelled'
        ELSE 'success' END"""


def json_rows(placeholder: str, alias: str, columns: Sequence[tuple[str, str]]) -> str:
    """SQL for the rows a parameter (at `placeholder`) carries as a JSON array of objects
    (see `json_rows_value`), as `alias` with `columns` (name, type) and `n`, the row's
    place in the array.

    One JSON parameter rather than an array per column: psycopg dumps an array in
    Python (~10 µs each; a whole-job report had fourteen), a JSON text is one string.
    """
    definitions = ", ".join(f"{name} {kind}" for name, kind in columns)
    names = ", ".join(name for name, _ in columns)
    return (
        f"ROWS FROM (json_to_recordset({placeholder}::json) AS ({definitions})) "
        f"WITH ORDINALITY AS {alias} ({names}, n)"
    )


def json_rows_value(columns: Sequence[tuple[str, str]], values: Iterable[Sequence[Any]]) -> str:
    """The JSON text of rows for `json_rows(…, columns)`, each row's values in their order."""
    names = [name for name, _ in columns]
    return rows.dump([dict(zip(names, row, strict=True)) for row in values])


_ATTEMPTS = 5
_RETRIED = (errors.DeadlockDetected, errors.SerializationFailure)

_EVENT_COLUMNS = (
    ("kind", "text"),
    ("run_id", "text"),
    ("job_id", "text"),
    ("data", "text"),
    ("created_at", "float8"),
)
_APPEND_EVENTS = f"""
    WITH turn AS MATERIALIZED (SELECT pg_advisory_xact_lock({{key}})),
    appended AS (
        INSERT INTO outbox (kind, run_id, job_id, data, created_at)
        SELECT e.kind, e.run_id, e.job_id, e.data, e.created_at
        FROM turn, {json_rows("%s", "e", _EVENT_COLUMNS)}
        ORDER BY e.n
    )
    SELECT pg_notify('{{channel}}', %s) WHERE %s <> ''
"""
_JOBS_OF_RUN = f"SELECT {rows.JOB_COLUMNS} FROM jobs WHERE run_id = %s ORDER BY seq"


class Numbered(NamedTuple):
    """A statement whose named placeholders are PostgreSQL's own $1, $2… (the same name,
    the same number), run through a raw cursor with its parameters in that order.

    psycopg turns `%(name)s` into `$n` at every execution of a statement longer than
    4 KiB (its cache leaves out the long statements ORMs generate): 0.3 ms of the
    server's CPU for each whole-job report here. A `Numbered` is converted once.
    """

    text: str
    names: tuple[str, ...]

    @classmethod
    def of(cls, query: str) -> Numbered:
        if _POSITIONAL.search(query.replace("%%", "")):
            raise ValueError("a numbered statement takes named placeholders only")
        names: dict[str, int] = {}

        def number(match: re.Match[str]) -> str:
            return f"${names.setdefault(match[1], len(names) + 1)}"

        text = _NAMED.sub(number, query).replace("%%", "%")
        return cls(text, tuple(names))

    def values(self, params: Mapping[str, Any]) -> list[Any]:
        return [params[name] for name in self.names]


_NAMED = re.compile(r"%\((\w+)\)s")
_POSITIONAL = re.compile(r"%[sbt]")
Statement = str | Numbered


def lock_key(purpose: str, schema: str | None) -> int:
    """A 64-bit advisory lock key for `purpose` within `schema`."""
    digest = hashlib.blake2b(f"conveyor:{purpose}:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class _Text(Dumper):
    """Python text as PostgreSQL text, NUL (which text cannot hold) as U+FFFD."""

    def dump(self, obj: Any) -> bytes:
        value: str = obj
        return value.replace("\x00", "\ufffd").encode()


async def connect(url: str, schema: str | None) -> Connection:
    """A new autocommit connection whose unqualified names resolve in `schema`."""
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True, client_encoding="utf8")
    conn.adapters.register_dumper(str, _Text)
    if schema is not None:
        try:
            await conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        except BaseException:
            await conn.close()
            raise
    return conn


@contextmanager
def translated() -> Iterator[None]:
    """Turn the driver's exceptions into StoreError at the boundary."""
    try:
        yield
    except psycopg.Error as exc:
        raise StoreError(f"PostgreSQL: {exc}") from exc
    except UnicodeEncodeError as exc:
        raise StoreError(f"text cannot be stored: {exc}") from exc


class Pool:
    """Up to `size` connections, opened when first needed, reused most-recent first."""

    def __init__(self, url: str, schema: str | None, size: int) -> None:
        if size < 1:
            raise ValueError(f"pool size must be at least 1, not {size}")
        self._url = url
        self._schema = schema
        self._slots = asyncio.Semaphore(size)
        self._idle: list[Connection] = []
        self._closed = False
        self._pids: dict[Connection, int] = {}

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def backend_pids(self) -> Collection[int]:
        """The server processes behind the pool's connections (whose NOTIFYs are our own)."""
        return self._pids.values()

    async def connect(self) -> Connection:
        """A connection of the pool's own kind that the pool does not manage."""
        return await connect(self._url, self._schema)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        if self._closed:
            raise StoreError("the store is closed")
        async with self._slots:
            if self._idle:
                conn = self._idle.pop()
            else:
                conn = await self.connect()
                self._pids[conn] = conn.info.backend_pid
            try:
                yield conn
            finally:
                reusable = not (conn.closed or conn.broken or self._closed) and (
                    conn.info.transaction_status == TransactionStatus.IDLE
                )
                if reusable:
                    self._idle.append(conn)
                else:
                    await self._discard(conn)

    async def _discard(self, conn: Connection) -> None:
        self._pids.pop(conn, None)
        await conn.close()

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            await self._discard(conn)


class Tx:
    """One connection's statements, and the outbox rows to append before it commits."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.events: list[tuple[str, str, str | None, Mapping[str, Any], float]] = []

    async def one(self, query: Statement, params: Params = ()) -> tuple[Any, ...] | None:
        return await (await self._execute(query, params)).fetchone()

    async def all(self, query: Statement, params: Params = ()) -> list[tuple[Any, ...]]:
        return await (await self._execute(query, params)).fetchall()

    async def run(self, query: Statement, params: Params = ()) -> int:
        """Execute; the number of rows changed."""
        return (await self._execute(query, params)).rowcount

    async def _execute(
        self, query: Statement, params: Params
    ) -> psycopg.AsyncCursor[tuple[Any, ...]]:
        if isinstance(query, str):
            return await self.conn.execute(query, params)
        assert isinstance(params, Mapping), "a numbered statement takes named parameters"
        return await AsyncRawCursor(self.conn).execute(query.text, query.values(params))

    def emit(
        self,
        kind: EventKind,
        run_id: str,
        job_id: str | None,
        data: Mapping[str, Any],
        now: float,
    ) -> None:
        self.events.append((kind.value, run_id, job_id, data, now))


class PostgresBase:
    """The pool, the clock and the id source; the helpers every operation uses."""

    def __init__(
        self,
        pool: Pool,
        clock: Callable[[], float],
        new_id: Callable[[], str],
        schema: str | None,
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._new_id = new_id
        self._signals = Signals()
        self._outbox_lock = lock_key("outbox", schema)
        self._append_events = _APPEND_EVENTS.format(key=self._outbox_lock, channel=CHANNEL)
        self._notice = schema or ""
        """The payload of this schema's notifications."""
        self._commits = 0

    @property
    def transactions(self) -> int:
        """Write transactions committed through this store since it opened (for benchmarks)."""
        return self._commits

    def wake_waiters(self) -> None:
        self._signals.committed("scq")  # as if a commit concerned them all

    async def _transact(self, body: Callable[[Tx], Awaitable[T]]) -> T:
        """Run `body` in one transaction, again from the start after a deadlock."""
        attempt = 0
        while True:
            attempt += 1
            flags = ""
            with translated():
                async with self._pool.connection() as conn:
                    tx = Tx(conn)
                    try:
                        async with conn.transaction():
                            result = await body(tx)
                            if tx.events:
                                flags = Signals.flags([(e[0], e[1], e[3]) for e in tx.events])
                                events = json_rows_value(
                                    _EVENT_COLUMNS,
                                    ((*e[:3], rows.dump(e[3]), e[4]) for e in tx.events),
                                )
                                notice = f"{self._notice}|{flags}"
                                params = [events, notice, flags]
                                await conn.execute(self._append_events, params)
                    except _RETRIED:
                        if attempt < _ATTEMPTS:
                            continue
                        raise
            self._commits += 1
            if flags:
                self._signals.committed(flags)
            return result

    async def _statement(self, query: Statement, params: Params) -> tuple[Any, ...] | None:
        """One writing statement as its own transaction (autocommit): its first row."""
        found = await self._statement_all(query, params)
        return found[0] if found else None

    async def _statement_all(self, query: Statement, params: Params) -> list[tuple[Any, ...]]:
        """One writing statement as its own transaction (autocommit), again after a
        deadlock: the rows it returns (none when it wrote nothing)."""
        attempt = 0
        while True:
            attempt += 1
            with translated():
                async with self._pool.connection() as conn:
                    try:
                        found = await Tx(conn).all(query, params)
                    except _RETRIED:
                        if attempt < _ATTEMPTS:
                            continue
                        raise
            if found:
                self._commits += 1
            return found

    async def _read(self, body: Callable[[Tx], Awaitable[T]]) -> T:
        """Run `body`'s statements outside a transaction (each sees the latest commits)."""
        with translated():
            async with self._pool.connection() as conn:
                return await body(Tx(conn))

    async def _one(self, query: str, params: Params = ()) -> tuple[Any, ...] | None:
        return await self._read(lambda tx: tx.one(query, params))

    async def _all(self, query: str, params: Params = ()) -> list[tuple[Any, ...]]:
        return await self._read(lambda tx: tx.all(query, params))

    @staticmethod
    async def _refusal(tx: Tx, job_id: str, action: str, epoch: int | None = None) -> StoreError:
        """Why a job transition matched no row, read inside the same transaction."""
        row = await tx.one("SELECT status, lease_epoch FROM jobs WHERE id = %s", (job_id,))
        if row is None:
            return NotFound(f"job {job_id!r} not found")
        status, current = JobStatus(row[0]), row[1]
        if epoch is not None and (epoch != current or status not in LEASED):
            return LeaseLost(
                f"cannot {action} job {job_id!r}: epoch {epoch} does not hold its lease "
                f"(the job is {status}, lease epoch {current})"
            )
        return Conflict(f"cannot {action} job {job_id!r}: it is {status}")

    async def _fence(
        self, tx: Tx, job_id: str, epoch: int, action: str, *, lock: str = "SHARE"
    ) -> str:
        """Lock the job (FOR `lock`) while `epoch` holds its lease; its run id.

        Else LeaseLost or NotFound. `lock` is SHARE or UPDATE, never user input.
        """
        row = await tx.one(
            f"SELECT run_id FROM jobs WHERE id = %s AND lease_epoch = %s "
            f"AND status IN {LEASED_IN} FOR {lock}",
            (job_id, epoch),
        )
        if row is None:
            raise await self._refusal(tx, job_id, action, epoch)
        run_id: str = row[0]
        return run_id

    @staticmethod
    async def _jobs_of(tx: Tx, run_id: str) -> list[JobRecord]:
        return [rows.job(row) for row in await tx.all(_JOBS_OF_RUN, (run_id,))]

    @staticmethod
    async def _exists(tx: Tx, table: str, object_id: str) -> bool:
        """Whether `table` (one of ours, never user input) has a row with this id."""
        return await tx.one(f"SELECT 1 FROM {table} WHERE id = %s", (object_id,)) is not None
