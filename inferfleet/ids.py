"""Opaque, time-ordered identifiers (`job_…`, `bat_…`), ULIDs underneath."""

import hashlib
from functools import lru_cache

from ulid import ULID


def new_job_id() -> str:
    """A new job ID; IDs made later sort after IDs made earlier (to the millisecond)."""
    return f"job_{str(ULID()).lower()}"


def new_batch_id() -> str:
    """A new batch ID (`bat_…`), time-ordered like job IDs."""
    return f"bat_{str(ULID()).lower()}"


RANDOM_BITS = 80  # a ULID is 48 bits of milliseconds, then 80 random bits
LINE_BITS = 32  # of them, a batch job's line number; the rest come from the batch ID


def batch_job_id(batch_id: str, line: int) -> str:
    """The ID of the job of input line `line` of batch `batch_id`.

    The same every time it is made, so an ingest that runs again after a crash makes no
    second job for a line (the primary key refuses it). It carries the batch's time, and
    a batch's jobs sort in line order: 48 bits drawn from a digest of the batch ID, then
    the line number. Not the batch's own random bits plus the line: IDs made in the same
    millisecond by one process follow each other (the ULID library counts up within a
    millisecond), so the next batch's jobs, or the next submit's, would take the same IDs.
    """
    millis = _ulid_value(batch_id) >> RANDOM_BITS
    if not 0 <= line < 1 << LINE_BITS:
        raise ValueError(f"line {line} is out of range for a batch job ID")
    random = (_batch_bits(batch_id) << LINE_BITS) | line
    return f"job_{str(ULID.from_int((millis << RANDOM_BITS) | random)).lower()}"


@lru_cache(maxsize=64)
def _ulid_value(batch_id: str) -> int:
    return int(ULID.from_str(batch_id.removeprefix("bat_").upper()))


@lru_cache(maxsize=64)
def _batch_bits(batch_id: str) -> int:
    digest = hashlib.blake2b(batch_id.encode(), digest_size=(RANDOM_BITS - LINE_BITS) // 8)
    return int.from_bytes(digest.digest(), "big")
