"""Version 8: an artifact remembers the job and the lease epoch that uploaded it.

A job retried after its runner was lost uploads its artifacts again; the
upload of a later epoch of the same job replaces the earlier execution's,
while another job's upload of the name is still refused. Rows written before
this version have neither and are never replaced.
"""

NAME = "artifact_epoch"

_STATEMENTS: tuple[str, ...] = (
    "ALTER TABLE artifacts ADD COLUMN job_id TEXT",
    "ALTER TABLE artifacts ADD COLUMN epoch INTEGER",
)

SQLITE: tuple[str, ...] = _STATEMENTS
POSTGRES: tuple[str, ...] = _STATEMENTS
