"""Version 4: an artifact remembers the job that uploaded it.

A re-run of failed jobs carries over the jobs that succeeded, and with them
the artifacts they uploaded; the others' are theirs to upload again.
"""

NAME = "artifact_job"

_STATEMENTS: tuple[str, ...] = ("ALTER TABLE artifacts ADD COLUMN job_key TEXT",)

SQLITE: tuple[str, ...] = _STATEMENTS
POSTGRES: tuple[str, ...] = _STATEMENTS
