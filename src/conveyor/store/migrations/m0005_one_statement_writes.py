"""Version 5 (PostgreSQL only): what lets a run's creation and a whole job's report
be single statements.

`run_numbers` hands out each workflow's next run number from one row, so a
creation no longer takes a lock to read the highest number so far; it starts
from the numbers already used. `conveyor_refuse` raises, which rolls a
single-statement write back whole when one of its parts matched nothing.
SQLite numbers runs inside its one-writer transactions and needs neither.
"""

NAME = "one_statement_writes"

SQLITE: tuple[str, ...] = ()
POSTGRES: tuple[str, ...] = (
    """
    CREATE TABLE run_numbers (
        tenant_id       TEXT NOT NULL,
        repository_key  TEXT NOT NULL,
        workflow_path   TEXT NOT NULL,
        last_number     INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, repository_key, workflow_path)
    )
    """,
    """
    INSERT INTO run_numbers (tenant_id, repository_key, workflow_path, last_number)
    SELECT tenant_id, COALESCE(repository_id, ''), workflow_path, MAX(run_number)
    FROM workflow_runs GROUP BY tenant_id, COALESCE(repository_id, ''), workflow_path
    """,
    """
    CREATE FUNCTION conveyor_refuse(reason TEXT) RETURNS BOOLEAN LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '%', reason USING ERRCODE = 'triggered_action_exception';
    END
    $$
    """,
)
