"""What the benchmarks run: a one-step no-op workflow, and the PostgreSQL they use."""

import uuid

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
"""A database to connect to for creating (and dropping) each run's own database."""

NOOP = """
on: workflow_dispatch
jobs:
  noop:
    runs-on: ubuntu-latest
    steps:
      - run: "true"
"""


def create_database() -> tuple[str, str]:
    """A new, empty PostgreSQL database for one measurement: -> (its name, its URL)."""
    import psycopg

    name = f"conveyor_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, f"postgresql://postgres@127.0.0.1:5432/{name}"


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
