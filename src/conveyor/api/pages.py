"""Cursor pages: the `cursor` and `limit` every list takes, and the next cursor it answers.

A list answers `{"items": [...], "next_cursor": ...}`, at most `limit` items
(1 to 200, 50 by default) in a stable order; `next_cursor` is null on the
last page, else what to pass back as `cursor` for the next one. A cursor
names the previous page's last item: one the list does not hold (made up,
another tenant's, another run's) is 422 `invalid`, the same whichever it is,
so a cursor tells nothing about other tenants' objects. (Workflows can be
deleted, so their list compares the cursor with ids instead of looking it up.)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

from fastapi import Query

from conveyor.api.deps import Invalid
from conveyor.errors import NotFound

T = TypeVar("T")

MAX_CURSOR = 1024
"""Longer than any id or artifact name: a longer cursor is refused before the store."""

Limit = Annotated[int, Query(ge=1, le=200, description="items per page, 1 to 200")]
Cursor = Annotated[
    str | None,
    Query(max_length=MAX_CURSOR, description="the previous page's `next_cursor`"),
]


async def page(
    fetch: Callable[[str | None, int], Awaitable[list[T]]],
    cursor: str | None,
    limit: int,
    position: Callable[[T], str],
) -> tuple[list[T], str | None]:
    """Up to `limit` items of `fetch(after, limit)` and the next page's cursor, if any.

    One more item than the page holds is fetched: its presence says that a next
    page exists. The store raises NotFound for an `after` that is not one of
    the list's items (the route checked the list's owner before).
    """
    try:
        found = await fetch(cursor, limit + 1)
    except NotFound:
        if cursor is None:
            raise
        raise Invalid(f"cursor {cursor!r} is not a position in this list") from None
    items = found[:limit]
    return items, position(items[-1]) if len(found) > limit else None
