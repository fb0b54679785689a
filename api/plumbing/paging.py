"""Cursor pages, shared by the API's listings of jobs and batches.

IDs are time-ordered (ULIDs), so a page is the newest rows below a cursor, and the
cursor of the next page is the last ID of this one: rows created meanwhile never shift
what a client pages through.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Select, Table


def newest_first(
    conn: Connection, query: Select[Any], table: Table, limit: int, cursor: str | None
) -> tuple[list[Any], str | None]:
    """A page of `query`'s rows of `table`, newest first, and the next page's cursor
    (None on the last page)."""
    query = query.order_by(table.c.id.desc())
    if cursor is not None:
        query = query.where(table.c.id < cursor)
    rows = list(conn.execute(query.limit(limit + 1)))
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1].id
    return rows, None
