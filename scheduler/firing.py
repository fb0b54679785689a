"""One beat tick over every schedule: fire what is due, record what was handled.

The rules live in `inferfleet.batches.schedules`; this module applies them to the stored
schedules. Any number of scheduler processes may run a tick at the same time: each
takes the schedules with `FOR UPDATE SKIP LOCKED` (a process finding them locked leaves
them to the next tick), and the unique constraint `batches_one_per_firing` holds even
if two processes do evaluate one schedule, so each firing makes one batch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, func, select, update

from inferfleet.batches.schedules import Schedule, due, insert_firing
from inferfleet.errors import InvalidInputError
from inferfleet.settings import Settings
from inferfleet.tables import schedules

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TickReport:
    """What one tick did: batches made, firings found already made, missed times skipped."""

    fired: int = 0
    existing: int = 0
    skipped: int = 0


def fire_due(engine: Engine, settings: Settings, now: datetime | None = None) -> TickReport:
    """Evaluate every schedule at `now` (default: the current time) in one transaction."""
    now = now or datetime.now(UTC)
    grace = timedelta(seconds=settings.schedule_grace_s)
    fired = existing = skipped = 0
    with engine.begin() as conn:
        rows = conn.execute(
            select(schedules).order_by(schedules.c.name).with_for_update(skip_locked=True)
        )
        for schedule in [Schedule.from_row(r) for r in rows]:
            try:
                decision = due(
                    schedule.rule,
                    handled_through=schedule.handled_through,
                    now=now,
                    catch_up=schedule.catch_up,
                    grace=grace,
                )
            except (InvalidInputError, ValueError) as e:
                # Stored schedules were valid when made; a cron library or tz data update
                # may still refuse one. It stays stored, and unfired, until fixed.
                log.error("schedule %s cannot be evaluated, not fired: %s", schedule.name, e)
                continue
            if decision is None:
                continue
            at = decision.scheduled_for.isoformat()
            if not decision.fire:
                skipped += 1
                log.warning(
                    "schedule %s: run at %s was missed while no scheduler ran; skipped "
                    "(catch_up is off)",
                    schedule.name,
                    at,
                )
            elif (batch_id := insert_firing(conn, schedule, decision.scheduled_for)) is None:
                existing += 1
                log.info("schedule %s: the batch of %s already exists", schedule.name, at)
            else:
                fired += 1
                log.info(
                    "schedule %s fired for %s%s: batch %s",
                    schedule.name,
                    at,
                    " (missed while no scheduler ran; caught up once)" if decision.late else "",
                    batch_id,
                )
            conn.execute(
                update(schedules)
                .where(schedules.c.name == schedule.name)
                .values(
                    last_fired_for=func.greatest(schedules.c.last_fired_for, decision.scheduled_for)
                )
            )
    return TickReport(fired, existing, skipped)
