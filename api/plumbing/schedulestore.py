"""Schedules as the API writes and reads them: the operations behind /v1/schedules.

The scheduler's beat fires them (`scheduler.firing`); `trigger` fires one now. Either
way a firing is one `validating` batch, which batch ingest takes from there.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, delete, select
from sqlalchemy.dialects.postgresql import insert

from api.plumbing.deps import Services
from api.plumbing.prefixes import tenant_uri
from api.plumbing.problems import ProblemError
from inferfleet.batches.schedules import (
    Schedule,
    firing_batch,
    get_schedule,
    insert_firing,
    list_schedules,
    make_cron,
    next_runs,
    placeholder_problem,
)
from inferfleet.batches.schemas import ScheduleCreate, ScheduleFired, ScheduleList, ScheduleView
from inferfleet.errors import FieldError, InvalidInputError, NotFoundError
from inferfleet.jobs.webhooks import refused_url
from inferfleet.models import registry
from inferfleet.tables import schedules, tenants


def create(services: Services, body: ScheduleCreate) -> ScheduleView:
    """Store a schedule: its S3 URIs under the tenant's prefixes (403), its cron,
    timezone, placeholders, tenant, model, version and webhook checked (422), a name not
    taken (409)."""
    settings = services.settings
    input_uri = tenant_uri(settings, body.tenant, ("input_uri",), body.input_uri)
    output_prefix = tenant_uri(settings, body.tenant, ("output_prefix",), body.output_prefix)
    output_prefix = output_prefix if output_prefix.endswith("/") else output_prefix + "/"
    errors: list[FieldError] = []
    try:
        make_cron(body.cron, body.timezone)
    except InvalidInputError as e:
        errors.extend(e.errors)
    problem = placeholder_problem(body.input_uri)
    if problem is not None:
        errors.append(FieldError(("input_uri",), problem, "placeholder", body.input_uri))
    if "{" in body.output_prefix or "}" in body.output_prefix:
        msg = "takes no placeholder: each firing writes under <name>/<scheduled time>/ in it"
        errors.append(FieldError(("output_prefix",), msg, "placeholder", body.output_prefix))
    if body.webhook is not None and (refused := refused_url(str(body.webhook.url), settings)):
        errors.append(refused)
    with services.engine.begin() as conn:
        errors.extend(_reference_errors(conn, body))
        if errors:
            raise InvalidInputError(errors)
        row = conn.execute(
            insert(schedules)
            .values(
                name=body.name,
                cron=body.cron,
                timezone=body.timezone,
                tenant=body.tenant,
                model=body.model,
                version=body.version,
                input_uri=input_uri,
                output_prefix=output_prefix,
                webhook=body.webhook.model_dump(mode="json") if body.webhook else None,
                catch_up=body.catch_up,
            )
            .on_conflict_do_nothing(index_elements=["name"])
            .returning(*schedules.c)
        ).first()
    if row is None:
        raise ProblemError(
            409, "Conflict", f"a schedule named {body.name!r} exists; delete it first"
        )
    return _view(Schedule.from_row(row))


def _reference_errors(conn: Connection, body: ScheduleCreate) -> list[FieldError]:
    """The tenant, model and version the schedule names must exist."""
    errors = []
    if conn.execute(select(tenants.c.name).where(tenants.c.name == body.tenant)).first() is None:
        msg = "no such tenant (a tenant is made with its first key)"
        errors.append(FieldError(("tenant",), msg, "not_found", body.tenant))
    if not registry.list_versions(conn, body.model):
        errors.append(FieldError(("model",), "no such model", "not_found", body.model))
    else:
        try:
            registry.resolve(conn, body.model, body.version)
        except NotFoundError as e:
            errors.append(FieldError(("version",), str(e), "not_found", body.version))
    return errors


def listing(services: Services) -> ScheduleList:
    """Every schedule of every tenant, by name, with its next run."""
    with services.engine.connect() as conn:
        return ScheduleList(items=[_view(s) for s in list_schedules(conn)])


def read(services: Services, name: str) -> ScheduleView:
    """One schedule, with the latest time it handled and its next run; 404 if none."""
    with services.engine.connect() as conn:
        return _view(_found(conn, name))


def remove(services: Services, name: str) -> ScheduleView:
    """Delete a schedule (the batches it fired stay); 404 if none."""
    with services.engine.begin() as conn:
        row = conn.execute(
            delete(schedules).where(schedules.c.name == name).returning(*schedules.c)
        ).first()
    if row is None:
        raise NotFoundError(f"no schedule named {name!r}")
    return _view(Schedule.from_row(row))


def trigger(services: Services, name: str, request_id: str) -> ScheduleFired:
    """Fire the schedule now: one batch scheduled for this second; a second trigger
    within the same second answers with the same batch."""
    now = datetime.now(UTC).replace(microsecond=0)
    with services.engine.begin() as conn:
        schedule = _found(conn, name)
        insert_firing(conn, schedule, now, request_id)
        batch = firing_batch(conn, name, now)
    return ScheduleFired(
        id=batch.id,
        status=batch.status,
        schedule=name,
        scheduled_for=batch.scheduled_for,
        input_uri=batch.input_uri,
        output_prefix=batch.output_prefix,
        created_at=batch.created_at,
    )


def _found(conn: Connection, name: str) -> Schedule:
    schedule = get_schedule(conn, name)
    if schedule is None:
        raise NotFoundError(f"no schedule named {name!r}")
    return schedule


def _view(schedule: Schedule) -> ScheduleView:
    try:
        upcoming = next_runs(schedule.rule, datetime.now(UTC), 1)
    except (InvalidInputError, ValueError):
        upcoming = []  # stored valid, refused by a newer cron library or tz data
    return ScheduleView(**dict(schedule), next_run_at=upcoming[0] if upcoming else None)
