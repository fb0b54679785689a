"""When schedules fire: daylight saving, missed runs, `{date}` and firing folders."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from inferfleet.batches.schedules import (
    due,
    input_uri_for,
    instant,
    latest_run,
    make_cron,
    next_runs,
    output_prefix_for,
    placeholder_problem,
    scheduled_date,
)
from inferfleet.errors import InvalidInputError

BERLIN = ZoneInfo("Europe/Berlin")
GRACE = timedelta(minutes=5)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("wall", "tz", "expected"),
    [
        # An ordinary wall time.
        (datetime(2026, 11, 25, 2, 0), "Europe/Berlin", utc(2026, 11, 25, 1, 0)),
        # Spring forward in Berlin (02:00 CET -> 03:00 CEST): skipped, runs at 03:00 CEST.
        (datetime(2026, 3, 29, 2, 30), "Europe/Berlin", utc(2026, 3, 29, 1, 0)),
        (datetime(2026, 3, 29, 2, 0), "Europe/Berlin", utc(2026, 3, 29, 1, 0)),
        (datetime(2026, 3, 29, 3, 0), "Europe/Berlin", utc(2026, 3, 29, 1, 0)),
        # Fall back in Berlin (03:00 CEST -> 02:00 CET): repeated, the first pass only.
        (datetime(2026, 10, 25, 2, 30), "Europe/Berlin", utc(2026, 10, 25, 0, 30)),
        # London is UTC+0 in winter: a zero offset is still an offset.
        (datetime(2026, 10, 25, 1, 30), "Europe/London", utc(2026, 10, 25, 0, 30)),
        (datetime(2026, 3, 29, 1, 30), "Europe/London", utc(2026, 3, 29, 1, 0)),
        # Havana springs forward at midnight: the day's midnight runs at 01:00 CDT.
        (datetime(2026, 3, 8, 0, 0), "America/Havana", utc(2026, 3, 8, 5, 0)),
        # Lord Howe moves by 30 minutes.
        (datetime(2026, 10, 4, 2, 15), "Australia/Lord_Howe", utc(2026, 10, 3, 15, 30)),
    ],
)
def test_a_wall_time_runs_at_one_instant(wall: datetime, tz: str, expected: datetime) -> None:
    assert instant(wall, ZoneInfo(tz)) == expected


@pytest.mark.parametrize(
    ("cron", "tz", "after", "expected"),
    [
        (
            "30 2 * * *",
            "Europe/Berlin",
            utc(2026, 3, 27, 12),
            # 02:30 does not exist on the 29th: it runs once, at 03:00 CEST.
            [utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)],
        ),
        (
            "30 2 * * *",
            "Europe/Berlin",
            utc(2026, 10, 23, 12),
            # 02:30 happens twice on the 25th: it runs once, at 02:30 CEST.
            [utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)],
        ),
        (
            "*/30 2 * * *",
            "Europe/Berlin",
            utc(2026, 3, 28, 12),
            # 02:00 and 02:30 are both skipped: one run at 03:00 CEST, not two.
            [utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 0), utc(2026, 3, 30, 0, 30)],
        ),
        (
            "0 * * * *",
            "Europe/Berlin",
            utc(2026, 10, 24, 23, 30),
            # 02:00 CET repeats 02:00 CEST: the hour after it has no run.
            [utc(2026, 10, 25, 0), utc(2026, 10, 25, 2), utc(2026, 10, 25, 3)],
        ),
        (
            "0 * * * *",
            "Europe/Berlin",
            utc(2026, 3, 28, 23, 30),
            [utc(2026, 3, 29, 0), utc(2026, 3, 29, 1), utc(2026, 3, 29, 2)],
        ),
        (
            "0 2 * * *",
            "UTC",
            utc(2026, 11, 25, 2),
            # Strictly after: a run at exactly `after` is not next.
            [utc(2026, 11, 26, 2), utc(2026, 11, 27, 2), utc(2026, 11, 28, 2)],
        ),
        (
            "@daily",
            "America/New_York",
            utc(2026, 11, 25, 12),
            [utc(2026, 11, 26, 5), utc(2026, 11, 27, 5), utc(2026, 11, 28, 5)],
        ),
    ],
)
def test_next_runs(cron: str, tz: str, after: datetime, expected: list[datetime]) -> None:
    assert next_runs(make_cron(cron, tz), after, 3) == expected


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (utc(2026, 11, 25, 1, 30), utc(2026, 11, 25, 1, 30)),  # exactly at a run
        (utc(2026, 11, 25, 1, 29, 59), utc(2026, 11, 24, 1, 30)),
        # Second pass of the repeated hour (02:40 CET): 02:30's run was its first pass.
        (utc(2026, 10, 25, 1, 40), utc(2026, 10, 25, 0, 30)),
        (utc(2026, 10, 25, 1, 20), utc(2026, 10, 25, 0, 30)),
        # After the gap: 02:30 ran at 03:00 CEST.
        (utc(2026, 3, 29, 1, 0, 30), utc(2026, 3, 29, 1, 0)),
        (utc(2026, 3, 29, 0, 59), utc(2026, 3, 28, 1, 30)),
    ],
)
def test_latest_run(now: datetime, expected: datetime) -> None:
    assert latest_run(make_cron("30 2 * * *", "Europe/Berlin"), now) == expected


def simulate(cron: str, tz: str, start: datetime, end: datetime) -> list[datetime]:
    """What a scheduler ticking every 15 s from `start` to `end` fires."""
    rule = make_cron(cron, tz)
    handled = start
    fired = []
    now = start
    while now <= end:
        d = due(rule, handled_through=handled, now=now, catch_up=True, grace=GRACE)
        if d is not None:
            assert (d.late, d.fire) == (False, True)
            fired.append(d.scheduled_for)
            handled = d.scheduled_for
        now += timedelta(seconds=15)
    return fired


@pytest.mark.parametrize(
    ("cron", "tz", "day", "expected_local"),
    [
        ("30 2 * * *", "Europe/Berlin", utc(2026, 3, 28, 22), ["2026-03-29T03:00:00+02:00"]),
        ("30 2 * * *", "Europe/Berlin", utc(2026, 10, 24, 22), ["2026-10-25T02:30:00+02:00"]),
        (
            "0 1-4 * * *",
            "Europe/Berlin",
            utc(2026, 10, 24, 22),
            [
                "2026-10-25T01:00:00+02:00",
                "2026-10-25T02:00:00+02:00",
                "2026-10-25T03:00:00+01:00",
                "2026-10-25T04:00:00+01:00",
            ],
        ),
        (
            "0 1-4 * * *",
            "Europe/Berlin",
            utc(2026, 3, 28, 22),
            ["2026-03-29T01:00:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-29T04:00:00+02:00"],
        ),
        (
            "45 1 * * *",
            "Europe/London",
            utc(2026, 10, 24, 22),
            ["2026-10-25T01:45:00+01:00"],
        ),
    ],
)
def test_a_scheduler_ticking_through_a_dst_night_fires_each_wall_time_once(
    cron: str, tz: str, day: datetime, expected_local: list[str]
) -> None:
    fired = simulate(cron, tz, day, day + timedelta(hours=8))
    assert [t.astimezone(ZoneInfo(tz)).isoformat() for t in fired] == expected_local


def test_an_on_time_run_fires_whether_or_not_the_schedule_catches_up() -> None:
    rule = make_cron("0 2 * * *", "UTC")
    for catch_up in (True, False):
        d = due(
            rule,
            handled_through=utc(2026, 11, 24, 2),
            now=utc(2026, 11, 25, 2, 0, 14),
            catch_up=catch_up,
            grace=GRACE,
        )
        assert d is not None
        assert (d.scheduled_for, d.late, d.fire) == (utc(2026, 11, 25, 2), False, True)


def test_missed_runs_fire_once_the_latest_only_when_catching_up() -> None:
    rule = make_cron("0 2 * * *", "UTC")
    # The scheduler was down from the 20th to the 25th at noon: five runs were missed.
    d = due(
        rule,
        handled_through=utc(2026, 11, 20, 2),
        now=utc(2026, 11, 25, 12),
        catch_up=True,
        grace=GRACE,
    )
    assert d is not None
    assert (d.scheduled_for, d.late, d.fire) == (utc(2026, 11, 25, 2), True, True)
    # Once that run is handled, nothing else of the missed ones is due.
    again = due(
        rule,
        handled_through=d.scheduled_for,
        now=utc(2026, 11, 25, 12, 0, 15),
        catch_up=True,
        grace=GRACE,
    )
    assert again is None


def test_missed_runs_are_skipped_without_catch_up() -> None:
    rule = make_cron("0 2 * * *", "UTC")
    d = due(
        rule,
        handled_through=utc(2026, 11, 20, 2),
        now=utc(2026, 11, 25, 12),
        catch_up=False,
        grace=GRACE,
    )
    assert d is not None
    assert (d.scheduled_for, d.late, d.fire) == (utc(2026, 11, 25, 2), True, False)
    # The next run is on time again and fires.
    nxt = due(
        rule,
        handled_through=d.scheduled_for,
        now=utc(2026, 11, 26, 2, 0, 5),
        catch_up=False,
        grace=GRACE,
    )
    assert nxt is not None
    assert (nxt.late, nxt.fire) == (False, True)


def test_a_run_just_past_the_grace_period_is_late() -> None:
    rule = make_cron("0 2 * * *", "UTC")
    handled = utc(2026, 11, 24, 2)
    for now, fire in ((utc(2026, 11, 25, 2, 5), True), (utc(2026, 11, 25, 2, 5, 1), False)):
        d = due(rule, handled_through=handled, now=now, catch_up=False, grace=GRACE)
        assert d is not None
        assert (d.late, d.fire) == (not fire, fire)


def test_nothing_before_the_schedule_existed_fires() -> None:
    rule = make_cron("0 2 * * *", "UTC")
    created = utc(2026, 11, 25, 2, 0, 1)
    assert due(rule, handled_through=created, now=created, catch_up=True, grace=GRACE) is None
    assert (
        due(rule, handled_through=created, now=utc(2026, 11, 26, 1, 59), catch_up=True, grace=GRACE)
        is None
    )


@pytest.mark.parametrize(
    ("scheduled_for", "tz", "date"),
    [
        # 23:30 UTC is already the next day in Berlin...
        (utc(2026, 11, 24, 23, 30), "Europe/Berlin", "2026-11-25"),
        # ...and 05:00 UTC still the previous day in Los Angeles.
        (utc(2026, 11, 25, 5, 0), "America/Los_Angeles", "2026-11-24"),
        (utc(2026, 11, 25, 5, 0), "UTC", "2026-11-25"),
        # The gap's run (02:30 moved to 03:00 CEST) keeps its date.
        (utc(2026, 3, 29, 1, 0), "Europe/Berlin", "2026-03-29"),
        # Havana's skipped midnight runs at 01:00 the same day.
        (utc(2026, 3, 8, 5, 0), "America/Havana", "2026-03-08"),
    ],
)
def test_date_is_the_scheduled_date_in_the_schedules_timezone(
    scheduled_for: datetime, tz: str, date: str
) -> None:
    assert scheduled_date(scheduled_for, ZoneInfo(tz)) == date
    template = "s3://inferfleet/tenants/acme/in/{date}/part-{date}.jsonl"
    assert input_uri_for(template, scheduled_for, ZoneInfo(tz)) == (
        f"s3://inferfleet/tenants/acme/in/{date}/part-{date}.jsonl"
    )


@pytest.mark.parametrize(
    ("prefix", "name", "scheduled_for", "folder"),
    [
        (
            "s3://inferfleet/tenants/acme/out/",
            "nightly",
            utc(2026, 11, 25, 2),
            "s3://inferfleet/tenants/acme/out/nightly/20261125T020000Z/",
        ),
        (
            "s3://inferfleet/tenants/acme/out",
            "risk.v2",
            datetime(2026, 11, 25, 3, 0, 7, tzinfo=BERLIN),
            "s3://inferfleet/tenants/acme/out/risk.v2/20261125T020007Z/",
        ),
        # The two passes of a repeated hour would share a local time; never a folder.
        (
            "s3://b/p/",
            "n",
            utc(2026, 10, 25, 1, 30),
            "s3://b/p/n/20261025T013000Z/",
        ),
    ],
)
def test_each_firing_writes_under_its_own_folder(
    prefix: str, name: str, scheduled_for: datetime, folder: str
) -> None:
    assert output_prefix_for(prefix, name, scheduled_for) == folder


@pytest.mark.parametrize(
    ("uri", "ok"),
    [
        ("s3://b/tenants/a/in.jsonl", True),
        ("s3://b/tenants/a/{date}/in.jsonl", True),
        ("s3://b/tenants/a/{date}-{date}.jsonl", True),
        ("s3://b/tenants/a/{hour}.jsonl", False),
        ("s3://b/tenants/a/{date.jsonl", False),
        ("s3://b/tenants/a/{{date}}.jsonl", False),
        ("s3://b/tenants/a/}.jsonl", False),
    ],
)
def test_date_is_the_only_placeholder(uri: str, ok: bool) -> None:
    assert (placeholder_problem(uri) is None) is ok


@pytest.mark.parametrize(
    ("cron", "tz", "bad"),
    [
        ("0 2 * *", "UTC", ["cron"]),
        ("0 2 * * * *", "UTC", ["cron"]),  # croniter's seconds field
        ("0 25 * * *", "UTC", ["cron"]),
        ("H 2 * * *", "UTC", ["cron"]),
        ("0 0 30 2 *", "UTC", ["cron"]),  # never matches
        ("@reboot", "UTC", ["cron"]),
        ("0 2 * * *", "Mars/Olympus", ["timezone"]),
        ("0 2 * * *", "localtime", ["timezone"]),
        ("0 2 * * *", "../etc/passwd", ["timezone"]),
        ("0 2 * * *", "Europe/", ["timezone"]),
        ("nope", "Nowhere", ["timezone", "cron"]),
    ],
)
def test_bad_crons_and_timezones_name_the_field_and_value(
    cron: str, tz: str, bad: list[str]
) -> None:
    with pytest.raises(InvalidInputError) as e:
        make_cron(cron, tz)
    assert [err.loc[0] for err in e.value.errors] == bad
    for err in e.value.errors:
        assert err.input == {"cron": cron, "timezone": tz}[str(err.loc[0])]


@pytest.mark.parametrize(
    "cron", ["0 2 * * *", "*/15 * * * *", "0 2 * * mon-fri", "@daily", "@HOURLY", "0 0 29 2 *"]
)
def test_good_crons(cron: str) -> None:
    assert make_cron(cron, "Europe/Berlin").expr == cron
