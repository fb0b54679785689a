"""Opaque, time-ordered identifiers (`job_…`, `bat_…`), ULIDs underneath."""

from functools import lru_cache

from ulid import ULID


def new_job_id() -> str:
    """A new job ID; IDs made later sort after IDs made earlier (to the millisecond)."""
    return f"job_{str(ULID()).lower()}"


def new_batch_id() -> str:
    """A new batch ID (`bat_…`), time-ordered like job IDs."""
    return f"bat_{str(ULID()).lower()}"


RANDOM_BITS = 80  # a ULID is 48 bits of milliseconds, then 80 random bits


def batch_job_id(batch_id: str, line: int) -> str:
    """The ID of the job of input line `line` of batch `batch_id`.

    The same every time it is made, so an ingest that runs again after a crash makes no
    second job for a line (the primary key refuses it). It carries the batch's time, and
    a batch's jobs sort in line order: the batch's random bits plus the line number.
    """
    value = _ulid_value(batch_id)
    millis = value >> RANDOM_BITS
    random = (value + line) & ((1 << RANDOM_BITS) - 1)
    return f"job_{str(ULID.from_int((millis << RANDOM_BITS) | random)).lower()}"


@lru_cache(maxsize=64)
def _ulid_value(batch_id: str) -> int:
    return int(ULID.from_str(batch_id.removeprefix("bat_").upper()))
