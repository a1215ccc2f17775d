"""Durable stores behind `conveyor.engine.store.Store`: schema, migrations and backends.

`conveyor.store.sqlite.SqliteStore` is the stdlib SQLite backend; a
PostgreSQL backend implements the same protocol on the same schema.
"""
