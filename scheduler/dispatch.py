"""The webhook dispatcher: drain due attempts from the outbox, POST them, record each.

One pass (`dispatch_once`) takes up to `dispatch_batch` due attempts with `FOR UPDATE
SKIP LOCKED`, so any number of dispatchers share the work without taking the same row,
and leases them (pushes `due_at` past the HTTP timeout) before it commits. It then posts
them in parallel, outside any transaction, and records each result. A dispatcher that
dies mid-pass leaves its leased rows to come due again: the receiver may then see an
attempt twice, under the same `webhook-id`, which is what that header is for.

Each attempt is signed afresh (a new `webhook-timestamp`) with the tenant's secret, and
during a rotation with the previous one too. The URL is checked again before each POST
(DNS may have changed since submit), and redirects are never followed.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from sqlalchemy import Connection, Engine, select, text

from inferfleet.batchview import load_view
from inferfleet.jobview import Presigner, job_view
from inferfleet.settings import Settings
from inferfleet.tables import jobs, tenants, webhook_events
from inferfleet.webhooks import signed_headers, url_problem
from scheduler.retries import AttemptResult, next_step, retry_after_s

log = logging.getLogger(__name__)

LEASE_MARGIN_S = 30.0
MAX_ERROR_CHARS = 500

CLAIM_DUE = text(
    """
    WITH due AS (
        SELECT id FROM webhook_attempts
         WHERE state = 'pending' AND due_at <= now()
         ORDER BY due_at
         LIMIT :limit
           FOR UPDATE SKIP LOCKED
    )
    UPDATE webhook_attempts AS a
       SET due_at = now() + make_interval(secs => :lease)
      FROM due, webhook_events AS e
     WHERE a.id = due.id AND e.id = a.event_id
    RETURNING a.id, a.attempt, a.event_id, e.tenant, e.job_id, e.type, e.url, e.body,
              e.created_at, e.retry_until
    """
)

# Only a still-pending attempt takes a result: if its lease ran out and another
# dispatcher recorded it first, this result is dropped.
RECORD = text(
    """
    UPDATE webhook_attempts
       SET state = :state, response_status = :status, error = :error, finished_at = now()
     WHERE id = :id AND state = 'pending'
    """
)
NEXT_ATTEMPT = text(
    """
    INSERT INTO webhook_attempts (id, event_id, attempt, state, due_at)
    VALUES ('dlv_' || replace(gen_random_uuid()::text, '-', ''), :event_id, :attempt,
            'pending', :due_at)
    """
)
EVENT_STATE = text("UPDATE webhook_events SET state = :state WHERE id = :id")


@dataclass(frozen=True)
class Due:
    """One attempt to make now, with what its event says."""

    attempt_id: str
    attempt: int
    event_id: str
    tenant: str
    job_id: str | None
    type: str
    url: str
    body: str | None
    created_at: datetime
    retry_until: datetime


def claim_due(engine: Engine, limit: int, lease_s: float) -> list[Due]:
    """Take up to `limit` due attempts for this dispatcher, leased for `lease_s`."""
    with engine.begin() as conn:
        rows = conn.execute(CLAIM_DUE, {"limit": limit, "lease": lease_s})
        return [
            Due(
                attempt_id=r.id,
                attempt=r.attempt,
                event_id=r.event_id,
                tenant=r.tenant,
                job_id=r.job_id,
                type=r.type,
                url=r.url,
                body=r.body,
                created_at=r.created_at,
                retry_until=r.retry_until,
            )
            for r in rows
        ]


def render_body(conn: Connection, due: Due, presign: Presigner | None) -> str:
    """The event's JSON body: rendered once, at its first attempt, then reused as is."""
    if due.body is not None:
        return due.body
    if due.job_id is not None:
        job = conn.execute(select(jobs).where(jobs.c.id == due.job_id)).one()
        data = job_view(job, presign).model_dump(mode="json")
    else:  # a batch's event: the batch as GET /v1/batches/{id} returns it
        batch_id = conn.execute(
            select(webhook_events.c.batch_id).where(webhook_events.c.id == due.event_id)
        ).scalar_one()
        view = load_view(conn, None, batch_id, presign)
        assert view is not None, f"event {due.event_id} names batch {batch_id}, which is gone"
        data = view.model_dump(mode="json")
    body = json.dumps(
        {
            "type": due.type,
            "timestamp": due.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "data": data,
        },
        separators=(",", ":"),
    )
    conn.execute(
        text("UPDATE webhook_events SET body = :body WHERE id = :id AND body IS NULL"),
        {"body": body, "id": due.event_id},
    )
    return body


def signing_secrets(conn: Connection, tenant: str) -> list[str]:
    """The tenant's secret, and the previous one while its overlap lasts (none if the
    tenant does not exist)."""
    row = conn.execute(select(tenants).where(tenants.c.name == tenant)).one_or_none()
    if row is None:
        return []
    found = [row.webhook_secret]
    expires = row.previous_secret_expires_at
    if row.previous_webhook_secret and expires is not None and expires > datetime.now(UTC):
        found.append(row.previous_webhook_secret)
    return found


def post(
    http: httpx.Client, url: str, headers: dict[str, str], body: str, allowlist: list[str]
) -> AttemptResult:
    """POST one attempt; refused URLs, timeouts and connection errors are results too."""
    problem = url_problem(url, allowlist)
    if problem is not None:
        return AttemptResult(status=None, error=problem)
    try:
        response = http.post(url, content=body.encode(), headers=headers)
    except httpx.TimeoutException:
        return AttemptResult(status=None, error="no answer before the timeout")
    except httpx.HTTPError as e:
        return AttemptResult(status=None, error=f"{type(e).__name__}: {e}"[:MAX_ERROR_CHARS])
    error = None
    if not 200 <= response.status_code < 300:
        error = f"the receiver answered {response.status_code}"
        if 300 <= response.status_code < 400:
            error += " (redirects are not followed)"
    return AttemptResult(
        status=response.status_code,
        error=error,
        retry_after_s=retry_after_s(response.headers.get("retry-after"), datetime.now(UTC)),
    )


def record(engine: Engine, due: Due, result: AttemptResult, settings: Settings) -> str:
    """Store one attempt's result and what follows it; returns the event's next step."""
    now = datetime.now(UTC)
    step = next_step(
        result,
        due.attempt,
        now,
        due.retry_until,
        settings.webhook_backoff_base_s,
        settings.webhook_backoff_max_s,
    )
    with engine.begin() as conn:
        params = {
            "id": due.attempt_id,
            "state": "delivered" if result.delivered else "failed",
            "status": result.status,
            "error": result.error,
        }
        if conn.execute(RECORD, params).rowcount == 0:
            return "superseded"
        if step.action == "retry":
            conn.execute(
                NEXT_ATTEMPT,
                {"event_id": due.event_id, "attempt": due.attempt + 1, "due_at": step.due_at},
            )
        else:
            conn.execute(EVENT_STATE, {"state": step.action, "id": due.event_id})
    return step.action


def deliver(
    engine: Engine,
    http: httpx.Client,
    due: Due,
    settings: Settings,
    presign: Presigner | None,
) -> str:
    """Make one attempt and record it."""
    with engine.begin() as conn:
        body = render_body(conn, due, presign)
        secrets = signing_secrets(conn, due.tenant)
    if secrets:
        timestamp = int(datetime.now(UTC).timestamp())
        headers = signed_headers(secrets, due.event_id, timestamp, body)
        result = post(http, due.url, headers, body, settings.webhook_allowlist)
    else:  # never sent unsigned; tried again later like any failed attempt
        result = AttemptResult(None, f"tenant {due.tenant!r} has no webhook secret")
    step = record(engine, due, result, settings)
    log.info(
        "webhook %s attempt %d %s to %s: %s -> %s",
        due.event_id,
        due.attempt,
        due.type,
        due.url,
        result.status if result.status is not None else result.error,
        step,
    )
    return step


def dispatch_once(
    engine: Engine,
    http: httpx.Client,
    settings: Settings,
    presign: Presigner | None = None,
    pool: ThreadPoolExecutor | None = None,
) -> int:
    """One pass over the due attempts; returns how many were made."""
    lease = settings.webhook_timeout_s + LEASE_MARGIN_S
    due = claim_due(engine, settings.dispatch_batch, lease)
    if not due:
        return 0

    def run(d: Due) -> str:
        # One attempt that cannot even be made (its job row gone, the database failing
        # mid-way) must not stop the others: its lease runs out and it is tried again.
        try:
            return deliver(engine, http, d, settings, presign)
        except Exception:
            log.exception("webhook %s attempt %d could not be made", d.event_id, d.attempt)
            return "error"

    if pool is None:
        for d in due:
            run(d)
    else:
        list(pool.map(run, due))
    return len(due)


def make_http(settings: Settings) -> httpx.Client:
    """The dispatcher's HTTP client: the delivery timeout, no redirects, no proxies from
    the environment (a webhook goes straight to its URL)."""
    return httpx.Client(
        timeout=settings.webhook_timeout_s,
        follow_redirects=False,
        trust_env=False,
        headers={"user-agent": "inferfleet-webhooks/1"},
    )
