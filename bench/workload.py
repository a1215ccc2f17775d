"""What the benchmarks run: a one-step no-op workflow, and where PostgreSQL is."""

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
