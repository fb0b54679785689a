"""inferfleet.jobs.partitions: a day's bounds hold exactly the keys made in that day."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from ulid import ULID

from inferfleet.ids import batch_job_id
from inferfleet.jobs.partitions import Span, bound, day_of, day_start, time_of

DAY = date(2026, 12, 5)


def job_id_at(at: datetime) -> str:
    return f"job_{str(ULID.from_datetime(at)).lower()}"


@pytest.mark.parametrize(
    ("offset", "inside"),
    [
        (timedelta(milliseconds=-1), False),
        (timedelta(0), True),
        (timedelta(hours=12), True),
        (timedelta(days=1, milliseconds=-1), True),
        (timedelta(days=1), False),
    ],
)
def test_a_key_lies_in_the_day_it_was_made(offset: timedelta, inside: bool) -> None:
    key = job_id_at(day_start(DAY) + offset)
    low, high = bound("job_", DAY), bound("job_", DAY + timedelta(days=1))
    assert (low <= key < high) is inside
    # Byte order, the order the migration requires of the database's collation.
    assert (low.encode() <= key.encode() < high.encode()) is inside


def test_a_batch_job_lies_in_its_batchs_day() -> None:
    batch_id = f"bat_{str(ULID.from_datetime(day_start(DAY) + timedelta(hours=23))).lower()}"
    low, high = bound("job_", DAY), bound("job_", DAY + timedelta(days=1))
    assert all(low <= batch_job_id(batch_id, line) < high for line in (1, 2, 4_000_000))


def test_a_bound_carries_its_days_first_millisecond() -> None:
    assert time_of(bound("msg_", DAY)) == day_start(DAY)
    assert time_of(job_id_at(datetime(2026, 12, 5, 7, 30, tzinfo=UTC))).hour == 7


def test_partition_names_give_their_day() -> None:
    assert day_of("webhook_attempts_p20261205") == DAY
    assert day_of("jobs_legacy") is None
    assert day_of("jobs_default") is None


def test_a_spans_key_range_per_prefix() -> None:
    day = Span("p20261205", day_start(DAY), day_start(DAY + timedelta(days=1)))
    legacy = Span("legacy", None, day_start(DAY))
    assert day.key_range("bat_") == (bound("bat_", DAY), bound("bat_", DAY + timedelta(days=1)))
    assert legacy.key_range("job_") == (None, bound("job_", DAY))
    assert day.name("jobs") == "jobs_p20261205"
