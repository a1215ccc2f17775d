"""Durable stores behind `conveyor.engine.store.Store`: schema, migrations and backends.

`conveyor.store.sqlite.SqliteStore` is the stdlib SQLite backend,
`conveyor.store.postgres.PostgresStore` the PostgreSQL one (psycopg 3);
`open_store` picks one from a database URL. Backends are imported only
when opened, so importing this package costs nothing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from conveyor.errors import StoreError

if TYPE_CHECKING:
    from conveyor.engine.store import Store


async def open_store(
    url: str | None,
    *,
    data_dir: str,
    clock: Callable[[], float] = time.time,
    new_id: Callable[[], str] | None = None,
) -> Store:
    """Open (creating and migrating as needed) the store that `url` names.

    - None or "": the SQLite file `<data_dir>/conveyor.db` (the directory is created);
    - `sqlite:///relative/path`, `sqlite:////absolute/path`, `sqlite:///:memory:`;
    - `postgresql://…` or `postgres://…`: PostgreSQL; a `schema=NAME` query
      parameter keeps Conveyor's tables in that schema (created if missing).

    Ids come from `new_id`, random ones (`rows.new_id`) by default.
    """
    if new_id is None:
        from conveyor.store import rows

        new_id = rows.new_id
    if not url:
        os.makedirs(data_dir, exist_ok=True)
        return await _sqlite(os.path.join(data_dir, "conveyor.db"), clock, new_id)
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        path = url[len("sqlite://") :] if url.lower().startswith("sqlite://") else ""
        if not path.startswith("/") or len(path) < 2:
            raise StoreError(f"a SQLite URL names a file, as sqlite:///path: {url!r}")
        return await _sqlite(path[1:], clock, new_id)
    if scheme in ("postgresql", "postgres"):
        from conveyor.store.postgres import PostgresStore

        dsn, schema = _split_schema(url)
        return await PostgresStore.open(dsn, schema=schema, clock=clock, new_id=new_id)
    raise StoreError(f"unsupported database URL {url!r}: use sqlite:///path or postgresql://…")


async def _sqlite(path: str, clock: Callable[[], float], new_id: Callable[[], str]) -> Store:
    from conveyor.store.sqlite import SqliteStore

    return await SqliteStore.open(path, clock=clock, new_id=new_id)


def _split_schema(url: str) -> tuple[str, str | None]:
    """`url` without its `schema` query parameter (libpq knows no such thing), and the schema."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schemas = [value for name, value in query if name == "schema"]
    if not schemas:
        return url, None
    if len(schemas) > 1 or not schemas[0]:
        raise StoreError(f"a PostgreSQL URL takes one non-empty schema parameter: {url!r}")
    rest = urlencode([(name, value) for name, value in query if name != "schema"])
    return urlunsplit(parts._replace(query=rest)), schemas[0]
