"""Version 6: a leased job remembers the runner's request that it was handed with.

An answer that hands a runner its job can be lost on the way (a dropped
connection, a timeout). The runner asks again with the same request (a poll's
name for itself, or the same numbered report), and is handed the same job, not
another, while that one would wait out its lease.
"""

NAME = "handed_with"

_STATEMENTS: tuple[str, ...] = ("ALTER TABLE jobs ADD COLUMN handed_with TEXT",)

SQLITE: tuple[str, ...] = _STATEMENTS
POSTGRES: tuple[str, ...] = _STATEMENTS
