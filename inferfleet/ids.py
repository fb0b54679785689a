"""Opaque, time-ordered identifiers (`job_…`), ULIDs underneath."""

from ulid import ULID


def new_job_id() -> str:
    """A new job ID; IDs made later sort after IDs made earlier (to the millisecond)."""
    return f"job_{str(ULID()).lower()}"
