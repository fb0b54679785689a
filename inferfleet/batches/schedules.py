"""Schedules: when a cron schedule fires, and the one batch each firing makes.

Times. A schedule's cron is read in its timezone's wall-clock time, and each scheduled
wall time becomes one UTC instant (`instant`):

- a wall time that occurs once is that instant;
- a wall time that a daylight-saving change repeats (autumn) is its first occurrence
  only, so it runs once;
- a wall time that a change skips (spring) runs at the end of the gap, the next valid
  time; skipped times that land on the same instant run once.

croniter 7 with timezone-aware datetimes moves skipped times to the end of the gap too,
but fires repeated times twice (02:30 CEST and 02:30 CET); so the cron is iterated here
in naive wall time and mapped to instants by `instant`.

Firing. `due` takes the latest scheduled time at or before now; it is due if it is later
than the latest time the schedule has handled (`Schedule.handled_through`). One older than
`grace` fell due while no scheduler ran: it fires once if the schedule catches up and is
skipped otherwise; earlier missed times are never fired. Each firing is one `batches` row
in status `validating` (ingest picks it up from there), unique per (schedule_name,
scheduled_for) by the constraint `batches_one_per_firing`: `insert_firing` inserts with
ON CONFLICT DO NOTHING, so any number of scheduler processes make one batch per firing.

Folders. A firing writes under `<output_prefix><name>/<scheduled time>/`, the scheduled
time in UTC in ISO 8601's basic format (`20261125T020000Z`): sortable, unambiguous on
the night the clocks go back, and only characters S3 documents as safe in keys.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from croniter import CroniterError, croniter
from pydantic import ConfigDict
from sqlalchemy import Connection, select
from sqlalchemy.dialects.postgresql import insert

from inferfleet.batches.schemas import ScheduleFields
from inferfleet.errors import FieldError, InvalidInputError
from inferfleet.ids import new_batch_id
from inferfleet.tables import batches, schedules

PLACEHOLDER = "{date}"
MACROS = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)
# Wall times examined for one answer; a valid cron needs a handful (at most 61 inside a
# repeated hour), so reaching this means the cron no longer matches any date.
SCAN_LIMIT = 10_000
FOLDER_TIME = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True)
class Cron:
    """A cron expression read in a timezone's wall-clock time."""

    expr: str
    tz: ZoneInfo


def make_cron(expr: str, timezone: str) -> Cron:
    """The cron `expr` in `timezone`; InvalidInputError naming each bad field and value.

    Five fields (minute to day of week) or a macro such as `@daily`; croniter's seconds
    and year fields are refused, and so is a cron that matches no date (`0 0 30 2 *`).
    """
    errors: list[FieldError] = []
    tz: ZoneInfo | None = None
    if timezone in _timezones():
        tz = ZoneInfo(timezone)
    else:
        msg = "not an IANA timezone name such as 'Europe/Berlin' or 'UTC'"
        errors.append(FieldError(("timezone",), msg, "timezone", timezone))
    problem = _cron_problem(expr)
    if problem is not None:
        errors.append(FieldError(("cron",), problem, "cron", expr))
    if errors:
        raise InvalidInputError(errors)
    assert tz is not None
    cron = Cron(expr, tz)
    try:
        next(_walls(cron, datetime(2000, 1, 1), forward=True))
    except CroniterError as e:
        msg = f"matches no date ({e})"
        raise InvalidInputError([FieldError(("cron",), msg, "cron", expr)]) from e
    return cron


@cache
def _timezones() -> frozenset[str]:
    # `localtime` is whatever zone the machine running the scheduler is set to.
    return frozenset(available_timezones() - {"localtime"})


def _cron_problem(expr: str) -> str | None:
    fields = expr.split()
    if len(fields) == 1 and fields[0].lower() in MACROS:
        return None
    if len(fields) != 5:
        return (
            f"has {len(fields)} field(s); give five (minute hour day-of-month month "
            f"day-of-week) or one of {', '.join(sorted(MACROS))}"
        )
    if not croniter.is_valid(expr):
        return "is not a valid cron expression"
    return None


def instant(wall: datetime, tz: ZoneInfo) -> datetime:
    """The UTC instant at which the naive wall time `wall` in `tz` runs.

    A repeated wall time gives its first occurrence; a skipped one gives the end of the
    gap (the transition itself, the first valid wall time after it).
    """
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == wall:
        return first
    # Inside a gap, fold=0 reads the wall time with the offset from before the change
    # (an instant after it) and fold=1 with the offset from after (an instant before it).
    # The transition lies between: find it to the second (tz data is in whole seconds).
    after = first.astimezone(tz).utcoffset()
    lo = int(wall.replace(tzinfo=tz, fold=1).timestamp())
    hi = int(first.timestamp())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, tz).utcoffset() == after:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


def _walls(cron: Cron, start: datetime, *, forward: bool) -> Iterator[datetime]:
    """Scheduled naive wall times after (or before) the naive `start`, exclusive."""
    times = croniter(cron.expr, start)
    for _ in range(SCAN_LIMIT):
        yield times.get_next(datetime) if forward else times.get_prev(datetime)
    raise CroniterError(f"no run of {cron.expr!r} within {SCAN_LIMIT} scheduled times")


def latest_run(cron: Cron, now: datetime) -> datetime:
    """The latest scheduled instant at or before `now` (UTC)."""
    local = now.astimezone(cron.tz)
    wall = local.replace(tzinfo=None, microsecond=0)
    # In the second pass of a repeated hour, the first pass of the wall times ahead of
    # `wall` is already over: look as far ahead as the clocks went back.
    first_pass, offset = local.replace(fold=0).utcoffset(), local.utcoffset()
    ahead = timedelta(0)
    if first_pass is not None and offset is not None and first_pass > offset:
        ahead = first_pass - offset
    for w in _walls(cron, wall + ahead + timedelta(seconds=1), forward=False):
        at = instant(w, cron.tz)
        if at <= now:
            return at
    raise AssertionError("unreachable: _walls raises when it gives up")


def next_runs(cron: Cron, after: datetime, count: int) -> list[datetime]:
    """The next `count` scheduled instants after `after` (UTC), each once, in order."""
    runs: list[datetime] = []
    if count < 1:
        return runs
    last = after
    for w in _walls(cron, after.astimezone(cron.tz).replace(tzinfo=None), forward=True):
        at = instant(w, cron.tz)
        if at > last:
            runs.append(at)
            last = at
            if len(runs) == count:
                break
    return runs


@dataclass(frozen=True)
class Due:
    """The latest scheduled time not yet handled, and what to do with it.

    `late`: more than the grace period old, so no scheduler ran when it fell due.
    `fire`: make its batch (on time, or late and the schedule catches up); otherwise
    it is skipped, and only recorded as handled.
    """

    scheduled_for: datetime
    late: bool
    fire: bool


def due(
    cron: Cron, *, handled_through: datetime, now: datetime, catch_up: bool, grace: timedelta
) -> Due | None:
    """What a scheduler evaluating the schedule at `now` does; None when nothing is due.

    Only the latest scheduled time after `handled_through` is ever considered, so any
    number of missed times fire at most once.
    """
    latest = latest_run(cron, now)
    if latest <= handled_through:
        return None
    late = now - latest > grace
    return Due(latest, late, fire=catch_up or not late)


def placeholder_problem(uri: str) -> str | None:
    """Why `uri` cannot name a firing's input: any `{…}` other than `{date}`."""
    rest = uri.replace(PLACEHOLDER, "")
    if "{" in rest or "}" in rest:
        return f"{PLACEHOLDER} is the only placeholder an input URI may contain"
    return None


def scheduled_date(scheduled_for: datetime, tz: ZoneInfo) -> str:
    """The date of a firing in its schedule's timezone, YYYY-MM-DD."""
    return scheduled_for.astimezone(tz).date().isoformat()


def input_uri_for(template: str, scheduled_for: datetime, tz: ZoneInfo) -> str:
    """The firing's input: `template` with `{date}` replaced by its scheduled date."""
    return template.replace(PLACEHOLDER, scheduled_date(scheduled_for, tz))


def output_prefix_for(output_prefix: str, name: str, scheduled_for: datetime) -> str:
    """The firing's own folder: `<output_prefix>/<name>/<20261125T020000Z>/`."""
    stamp = scheduled_for.astimezone(UTC).strftime(FOLDER_TIME)
    return f"{output_prefix.rstrip('/')}/{name}/{stamp}/"


class Schedule(ScheduleFields):
    """A stored schedule (table `schedules`), as the scheduler fires it."""

    model_config = ConfigDict(frozen=True)

    created_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> Schedule:
        return cls.model_validate({name: getattr(row, name) for name in cls.model_fields})

    @property
    def rule(self) -> Cron:
        return make_cron(self.cron, self.timezone)

    @property
    def handled_through(self) -> datetime:
        """Scheduled times up to this one are done: fired or skipped, or from before the
        schedule existed."""
        return self.last_fired_for or self.created_at


def list_schedules(conn: Connection) -> list[Schedule]:
    """Every schedule, by name."""
    rows = conn.execute(select(schedules).order_by(schedules.c.name))
    return [Schedule.from_row(r) for r in rows]


def get_schedule(conn: Connection, name: str) -> Schedule | None:
    row = conn.execute(select(schedules).where(schedules.c.name == name)).first()
    return None if row is None else Schedule.from_row(row)


def insert_firing(
    conn: Connection, schedule: Schedule, scheduled_for: datetime, request_id: str | None = None
) -> str | None:
    """Insert the batch of `schedule`'s firing at `scheduled_for`; its ID, or None when
    that firing's batch already exists (made by another scheduler process, or earlier)."""
    tz = ZoneInfo(schedule.timezone)
    row = {
        "id": new_batch_id(),
        "tenant": schedule.tenant,
        "model": schedule.model,
        "version": schedule.version,
        "status": "validating",
        "input_uri": input_uri_for(schedule.input_uri, scheduled_for, tz),
        "output_prefix": output_prefix_for(schedule.output_prefix, schedule.name, scheduled_for),
        "webhook": schedule.webhook.model_dump(mode="json") if schedule.webhook else None,
        "schedule_name": schedule.name,
        "scheduled_for": scheduled_for,
        "request_id": request_id,
    }
    statement = (
        insert(batches)
        .values(row)
        .on_conflict_do_nothing(constraint="batches_one_per_firing")
        .returning(batches.c.id)
    )
    batch_id: str | None = conn.execute(statement).scalar_one_or_none()
    return batch_id


def firing_batch(conn: Connection, name: str, scheduled_for: datetime) -> Any:
    """The batch row of `name`'s firing at `scheduled_for`, or None."""
    return conn.execute(
        select(batches).where(
            batches.c.schedule_name == name, batches.c.scheduled_for == scheduled_for
        )
    ).first()
