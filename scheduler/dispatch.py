"""The webhook dispatcher: drain due attempts from the outbox, POST them, record each.

A `Dispatcher` owns `dispatch_threads` delivery threads. `top_up()` claims only as many
due attempts as it has free threads, with `FOR UPDATE SKIP LOCKED` (dispatchers never
take the same row), and at most `webhook_tenant_inflight` of one tenant's attempts in
flight at once, so a tenant whose receiver is slow holds at most that many threads and
every other tenant still finds free ones. Each claimed attempt starts at once, so its
lease (`lease_s`, the one rule for it) is one attempt's deadline plus a margin for
rendering and recording: a lease never runs out under an attempt still waiting for a
thread. A dispatcher that dies mid-attempt leaves its leased rows to come due again:
the receiver may then see an attempt twice, under the same `webhook-id`, which is what
that header is for.

Every attempt is rendered afresh (a new presigned `output_url`) and signed afresh (a new
`webhook-timestamp`) with the tenant's secret, and during a rotation with the previous
one too. The URL's host is resolved and checked at every attempt and the POST goes to
the checked addresses only (`scheduler.sending`), or through `INFERFLEET_WEBHOOK_PROXY`;
redirects are never followed. The deliveries list records only a status or a generic
reason (`REFUSED`, `UNREACHABLE`, `TIMEOUT`); the detail goes to the log.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import httpcore
import httpx
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy import Connection, Engine, select, text

from inferfleet import tracing
from inferfleet.batches.view import load_view
from inferfleet.errors import ConfigError
from inferfleet.jobs.view import Presigner, job_view
from inferfleet.jobs.webhooks import signed_headers
from inferfleet.jobs.webhooktargets import Refusal, Resolver, check_url, system_resolve
from inferfleet.settings import Settings
from inferfleet.tables import jobs, tenants, webhook_events
from scheduler import sending
from scheduler.retries import AttemptResult, next_step, retry_after_s

log = logging.getLogger(__name__)
TRACER = tracing.tracer(__name__)

LEASE_MARGIN_S = 30.0
# What the deliveries list says when there was no HTTP status: nothing more, so that a
# tenant cannot map the fleet's network through it.
REFUSED = "refused target"
UNREACHABLE = "unreachable"
TIMEOUT = "timeout"
# How a delivery attempt ended, as `inferfleet_webhook_delivery_attempts_total` counts
# it (`delivery_outcome`): one word per attempt, so their sum is the attempts made.
OUTCOMES = ("delivered", "retry", "failed", "refused", "superseded")

# Due attempts in due order, at most `cap` in flight per tenant counting the ones this
# dispatcher already has (`busy`), and no more than `limit` in all.
CLAIM_DUE = text(
    """
    WITH busy AS (
        SELECT * FROM unnest(CAST(:busy_tenants AS text[]), CAST(:busy_counts AS int[]))
            AS b(tenant, n)
    ),
    ranked AS (
        SELECT a.id, a.due_at,
               row_number() OVER (PARTITION BY e.tenant ORDER BY a.due_at, a.id)
                   + coalesce(b.n, 0) AS slot
          FROM webhook_attempts AS a
          JOIN webhook_events AS e ON e.id = a.event_id
          LEFT JOIN busy AS b ON b.tenant = e.tenant
         WHERE a.state = 'pending' AND a.due_at <= now()
    ),
    due AS (
        SELECT a.id, a.event_id FROM webhook_attempts AS a
          JOIN ranked AS r ON r.id = a.id
         WHERE r.slot <= :cap AND a.state = 'pending' AND a.due_at <= now()
         ORDER BY r.due_at
         LIMIT :limit
           FOR UPDATE OF a SKIP LOCKED
    )
    UPDATE webhook_attempts AS a
       SET due_at = now() + make_interval(secs => :lease)
      FROM due, webhook_events AS e
     WHERE a.id = due.id AND a.event_id = due.event_id AND e.id = a.event_id
    RETURNING a.id, a.attempt, a.event_id, e.tenant, e.job_id, e.type, e.url,
              e.created_at, e.retry_until
    """
)

# Only a still-pending attempt takes a result: if its lease ran out and another
# dispatcher recorded it first, this result is dropped.
RECORD = text(
    """
    UPDATE webhook_attempts
       SET state = :state, response_status = :status, error = :error, finished_at = now()
     WHERE id = :id AND event_id = :event_id AND state = 'pending'
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


def lease_s(settings: Settings) -> float:
    """How long a claimed attempt stays this dispatcher's. Attempts are claimed only
    for free threads and start at once, so one attempt's whole deadline plus a margin
    (render, sign, record) always covers it."""
    return settings.webhook_timeout_s + LEASE_MARGIN_S


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
    created_at: datetime
    retry_until: datetime


def claim_due(
    engine: Engine, limit: int, lease: float, cap: int, busy: dict[str, int]
) -> list[Due]:
    """Take up to `limit` due attempts, leased for `lease` seconds, leaving out any that
    would put a tenant over `cap` attempts in flight (`busy`: those already are)."""
    params = {
        "limit": limit,
        "lease": lease,
        "cap": cap,
        "busy_tenants": list(busy),
        "busy_counts": list(busy.values()),
    }
    with engine.begin() as conn:
        rows = conn.execute(CLAIM_DUE, params)
        return [
            Due(
                attempt_id=r.id,
                attempt=r.attempt,
                event_id=r.event_id,
                tenant=r.tenant,
                job_id=r.job_id,
                type=r.type,
                url=r.url,
                created_at=r.created_at,
                retry_until=r.retry_until,
            )
            for r in rows
        ]


@dataclass(frozen=True)
class Rendered:
    """An attempt's body, and the trace context of its job (None for a batch's event,
    or a job made without one)."""

    body: str
    traceparent: str | None


def render(conn: Connection, due: Due, presign: Presigner | None) -> Rendered:
    """The event's JSON body as of now: the job (or batch) as the API returns it, with
    a presigned `output_url` made for this attempt; the job's row gives its trace too."""
    traceparent = None
    if due.job_id is not None:
        job = conn.execute(select(jobs).where(jobs.c.id == due.job_id)).one()
        data = job_view(job, presign).model_dump(mode="json")
        traceparent = job.traceparent
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
    return Rendered(body, traceparent)


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


@dataclass(frozen=True)
class Sender:
    """How attempts reach receivers: the address rule, the resolver, the TLS context,
    the deadline of one attempt, and the egress proxy if the operator named one."""

    allowlist: list[str]
    resolver: Resolver
    ssl_context: ssl.SSLContext
    deadline_s: float
    proxy: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings, resolver: Resolver | None = None) -> Sender:
        return cls(
            allowlist=settings.webhook_allowlist,
            # The look-up runs on the attempt's own thread, so a slow DNS server holds
            # only threads of the tenant that named it (at most its in-flight cap).
            resolver=resolver or system_resolve,
            ssl_context=httpx.create_ssl_context(),
            deadline_s=settings.webhook_timeout_s,
            proxy=settings.webhook_proxy,
        )

    def post(self, url: str, headers: dict[str, str], body: str) -> AttemptResult:
        """POST one attempt; refused targets, timeouts and connection errors are results
        too, recorded by a generic reason only (the detail is logged)."""
        started = time.monotonic()
        host: str | None = None
        addresses: tuple[str, ...] = ()
        if self.proxy is None:  # with a proxy, the proxy resolves and checks
            target = check_url(url, self.allowlist, self.resolver)
            if isinstance(target, Refusal):
                log.warning("webhook to %s not sent: %s", url, target.reason)
                return AttemptResult(None, UNREACHABLE if target.unresolved else REFUSED)
            host, addresses = target.host, target.addresses
        left = self.deadline_s - (time.monotonic() - started)  # the look-up counts too
        if left <= 0:
            log.warning("webhook to %s: resolving %s took the whole deadline", url, host)
            return AttemptResult(None, TIMEOUT)
        try:
            answer = sending.post(
                url,
                headers,
                body.encode(),
                deadline_s=left,
                ssl_context=self.ssl_context,
                host=host,
                addresses=addresses,
                proxy=self.proxy,
            )
        except httpcore.TimeoutException as e:
            log.warning("webhook to %s timed out: %r", url, e)
            return AttemptResult(None, TIMEOUT)
        except (httpcore.ProxyError, httpcore.UnsupportedProtocol) as e:
            log.warning("webhook to %s refused: %r", url, e)
            return AttemptResult(None, REFUSED)
        except (httpcore.NetworkError, httpcore.ProtocolError, ssl.SSLError, OSError) as e:
            log.warning("webhook to %s got no answer: %r", url, e)
            return AttemptResult(None, UNREACHABLE)
        error = None
        if not 200 <= answer.status < 300:
            error = f"the receiver answered {answer.status}"
            if 300 <= answer.status < 400:
                error += " (redirects are not followed)"
        return AttemptResult(
            status=answer.status,
            error=error,
            retry_after_s=retry_after_s(answer.retry_after, datetime.now(UTC)),
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
            "event_id": due.event_id,  # the partition key: one partition is read
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


def delivery_outcome(result: AttemptResult, step: str) -> str:
    """The attempt's word in OUTCOMES, from its result and the event's next step
    (`record`'s answer): a refused target is `refused` whatever follows it."""
    if step == "superseded" or result.delivered:
        return step
    if result.status is None and result.error == REFUSED:
        return "refused"
    return step


def deliver(
    engine: Engine, sender: Sender, due: Due, settings: Settings, presign: Presigner | None
) -> str:
    """Make one attempt and record it; returns its outcome (OUTCOMES)."""
    with engine.begin() as conn:
        rendered = render(conn, due, presign)
        secrets = signing_secrets(conn, due.tenant)
    body, parent = rendered.body, rendered.traceparent
    attributes: dict[str, str | int] = {
        "inferfleet.webhook_id": due.event_id,
        "inferfleet.event": due.type,
        "inferfleet.attempt": due.attempt,
    }
    with TRACER.start_as_current_span(
        "inferfleet.webhook",
        context=tracing.context_of(parent),
        kind=SpanKind.CLIENT,
        attributes=attributes,
    ) as span:
        if secrets:
            timestamp = int(datetime.now(UTC).timestamp())
            headers = signed_headers(secrets, due.event_id, timestamp, body)
            sent = tracing.current_traceparent() or parent
            if sent:  # the receiver may continue the job's trace
                headers[tracing.TRACEPARENT] = sent
            result = sender.post(due.url, headers, body)
        else:  # never sent unsigned; tried again later like any failed attempt
            result = AttemptResult(None, f"tenant {due.tenant!r} has no webhook secret")
        if result.status is not None:
            span.set_attribute("http.response.status_code", result.status)
        if not result.delivered:
            span.set_status(StatusCode.ERROR, result.error or "not delivered")
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
    return delivery_outcome(result, step)


class Dispatcher:
    """The delivery threads of one process and the attempts they have in flight;
    `count`, if given, is called with each attempt's outcome (OUTCOMES)."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        presign: Presigner | None = None,
        sender: Sender | None = None,
        count: Callable[[str], None] | None = None,
    ) -> None:
        if settings.webhook_tenant_inflight >= settings.dispatch_threads:
            raise ConfigError(
                f"INFERFLEET_WEBHOOK_TENANT_INFLIGHT ({settings.webhook_tenant_inflight}) must "
                f"be below INFERFLEET_DISPATCH_THREADS ({settings.dispatch_threads}), or one "
                "tenant's slow receiver could hold every delivery thread"
            )
        self._engine = engine
        self._settings = settings
        self._presign = presign
        self._sender = sender or Sender.from_settings(settings)
        self._count = count
        self._pool = ThreadPoolExecutor(settings.dispatch_threads, "webhook")
        self._busy: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._claiming = threading.Lock()

    def in_flight(self) -> dict[str, int]:
        """Attempts being made now, per tenant."""
        with self._lock:
            return {tenant: n for tenant, n in self._busy.items() if n > 0}

    def top_up(self) -> int:
        """Claim due attempts for the free threads and start them; returns how many.
        A claim already running elsewhere in this process makes this one return 0."""
        if not self._claiming.acquire(blocking=False):
            return 0
        try:
            busy = self.in_flight()
            free = self._settings.dispatch_threads - sum(busy.values())
            limit = min(free, self._settings.dispatch_batch)
            if limit <= 0:
                return 0
            cap = self._settings.webhook_tenant_inflight
            due = claim_due(self._engine, limit, lease_s(self._settings), cap, busy)
            with self._lock:
                self._busy.update(d.tenant for d in due)
            for d in due:
                self._pool.submit(self._run, d, more=len(due) == limit)
            return len(due)
        finally:
            self._claiming.release()

    def _run(self, due: Due, more: bool) -> None:
        # One attempt that cannot even be made (its job row gone, the database failing
        # mid-way) must not stop the others: its lease runs out and it is tried again.
        try:
            outcome = deliver(self._engine, self._sender, due, self._settings, self._presign)
            if self._count is not None:
                self._count(outcome)
        except Exception:
            log.exception("webhook %s attempt %d could not be made", due.event_id, due.attempt)
        finally:
            with self._lock:
                self._busy[due.tenant] -= 1
        if more:  # the last claim filled every free thread: more may be waiting now
            try:
                self.top_up()
            except Exception:
                log.exception("claiming more webhook attempts failed")

    def drain(self) -> None:
        """Wait for the attempts in flight to end; the threads stop (tests, shutdown)."""
        self._pool.shutdown(wait=True)
