"""Version 3: a job remembers the number of the last runner report it applied.

A runner numbers its reports per lease; one it sends again because the answer
was lost is then recognised and not applied twice (its log lines included).
"""

NAME = "report_seq"

_STATEMENTS: tuple[str, ...] = (
    "ALTER TABLE jobs ADD COLUMN report_seq INTEGER NOT NULL DEFAULT 0",
)

SQLITE: tuple[str, ...] = _STATEMENTS
POSTGRES: tuple[str, ...] = _STATEMENTS
