"""Version 7: an `Idempotency-Key` is reserved before its request acts, and bound to it.

A key is now one row per tenant (not per method and path), inserted before
the request acts: a concurrent request with the key loses the insert. The
row holds the request's SHA-256 `fingerprint` (method, path, body), the
`reservation` of the request holding it and when it was taken; `status` and
`body` stay NULL until the answer is stored. The answers stored by earlier
versions were not bound to a body, so they cannot be checked against one:
they are dropped (a retry across the upgrade acts again).
"""

NAME = "idempotency_reservations"


def _statements(time: str, tail: str) -> tuple[str, ...]:
    return (
        "DROP TABLE idempotent_responses",
        f"""
        CREATE TABLE idempotent_responses (
            tenant_id    TEXT NOT NULL,
            key          TEXT NOT NULL,
            fingerprint  TEXT NOT NULL,
            reservation  TEXT NOT NULL,
            reserved_at  {time} NOT NULL,
            status       INTEGER,
            body         TEXT,
            PRIMARY KEY (tenant_id, key)
        ){tail}
        """,
    )


SQLITE: tuple[str, ...] = _statements("REAL", " WITHOUT ROWID")
POSTGRES: tuple[str, ...] = _statements("DOUBLE PRECISION", "")
