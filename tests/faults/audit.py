"""What a fault run must end with, counted: every accepted job succeeded exactly once,
nothing else ran, nothing is left `queued` or `running`, and every webhook event reached
the receiver under one `webhook-id`, signed with the tenant's secret.

The counts come from the audit trigger's table of terminal writes (`AUDIT_SQL`, as the
kill -9 test of the worker uses), the jobs and outbox tables, and the receiver's record
of what it was sent; signatures are checked with the `standardwebhooks` library.
"""

from __future__ import annotations

import hmac
import json
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from standardwebhooks.webhooks import Webhook

from tests.integration.receiver import Receiver

OPEN = text(
    """
    SELECT count(*) FILTER (WHERE status IN ('queued', 'running')) AS open,
           count(*) FILTER (WHERE status = 'succeeded' AND id = ANY(:ids)) AS done
      FROM jobs WHERE model = :m
    """
)
PENDING_EVENTS = text(
    "SELECT count(*) FROM webhook_events WHERE job_id = ANY(:ids) AND state = 'pending'"
)


def drained(engine: Engine, model: str, accepted: list[str], hooked: list[str]) -> bool:
    """Every accepted job succeeded, none of the model's jobs open, no event pending."""
    with engine.connect() as conn:
        row = conn.execute(OPEN, {"m": model, "ids": accepted}).one()
        pending = conn.execute(PENDING_EVENTS, {"ids": hooked}).scalar_one()
    return row.open == 0 and row.done == len(accepted) and pending == 0


def wait_drained(
    engine: Engine, model: str, accepted: list[str], hooked: list[str], timeout: float
) -> float | None:
    """When the run drained (monotonic time), or None if it did not within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if drained(engine, model, accepted, hooked):
                return time.monotonic()
        except DBAPIError:  # Postgres may still be coming back
            pass
        time.sleep(1.0)
    return None


@dataclass
class Audit:
    """The counts a run is judged by; every field but the first two must be 0."""

    accepted: int
    webhook_jobs: int
    lost: int  # accepted but not succeeded
    doubled: int  # written into a terminal state more than once
    ran_unaccepted: int  # succeeded although no client was given its ID
    left_open: int  # the model's jobs still queued or running
    events_missing: int  # webhook jobs without exactly one delivered event
    never_received: int  # webhook jobs the receiver never answered 2xx for
    several_ids: int  # webhook jobs the receiver saw under more than one webhook-id
    bad_signatures: int
    redelivered: int = 0  # events answered 2xx more than once (allowed: at least once)

    def problems(self) -> dict[str, int]:
        skip = {"accepted", "webhook_jobs", "redelivered"}
        return {k: v for k, v in asdict(self).items() if k not in skip and v}


def audit(
    engine: Engine,
    model: str,
    accepted: list[str],
    hooked: list[str],
    receiver: Receiver,
    secret: str,
) -> Audit:
    """Count what the run left, from the database and the receiver."""
    with engine.connect() as conn:
        statuses = dict(
            conn.execute(text("SELECT id, status FROM jobs WHERE model = :m"), {"m": model}).all()
        )
        writes = dict(
            conn.execute(
                text(
                    "SELECT w.job_id, count(*) FROM test_terminal_writes AS w "
                    "JOIN jobs AS j ON j.id = w.job_id WHERE j.model = :m GROUP BY w.job_id"
                ),
                {"m": model},
            ).all()
        )
        events = conn.execute(
            text(
                "SELECT job_id, count(*) AS n, bool_and(state = 'delivered') AS delivered "
                "FROM webhook_events WHERE job_id = ANY(:ids) GROUP BY job_id"
            ),
            {"ids": hooked},
        ).all()
    accepted_set = set(accepted)
    delivered_once = {e.job_id for e in events if e.n == 1 and e.delivered}
    seen = received_by_job(receiver, secret)
    return Audit(
        accepted=len(accepted),
        webhook_jobs=len(hooked),
        lost=sum(1 for j in accepted if statuses.get(j) != "succeeded"),
        doubled=sum(1 for n in writes.values() if n > 1),
        ran_unaccepted=sum(
            1 for j, s in statuses.items() if s == "succeeded" and j not in accepted_set
        ),
        left_open=sum(1 for s in statuses.values() if s in ("queued", "running")),
        events_missing=sum(1 for j in hooked if j not in delivered_once),
        never_received=sum(1 for j in hooked if not seen[j]["ok"]),
        several_ids=sum(1 for j in hooked if len(seen[j]["ids"]) > 1),
        bad_signatures=sum(v["bad"] for v in seen.values()),
        redelivered=sum(max(0, v["ok"] - 1) for v in seen.values()),
    )


def received_by_job(receiver: Receiver, secret: str) -> dict[str, dict[str, Any]]:
    """Per job: the webhook-ids it came under, 2xx answers, and bad signatures."""
    seen: dict[str, dict[str, Any]] = defaultdict(lambda: {"ids": set(), "ok": 0, "bad": 0})
    for request in receiver.snapshot():
        if not signed(Webhook(secret), request.headers, request.body):
            seen["?"]["bad"] += 1
            continue
        entry = seen[json.loads(request.body)["data"]["id"]]
        entry["ids"].add(request.webhook_id)
        if 200 <= request.answered < 300:
            entry["ok"] += 1
    return seen


def signed(verifier: Webhook, headers: dict[str, str], body: bytes) -> bool:
    """Whether one of the request's signatures is the library's for its id, timestamp and
    body. `Webhook.verify` would also refuse a timestamp older than five minutes, which
    an audit made after a long run cannot avoid; the signature is what matters here."""
    at = datetime.fromtimestamp(int(headers["webhook-timestamp"]), UTC)
    expected = verifier.sign(headers["webhook-id"], at, body)
    return any(
        hmac.compare_digest(expected, given) for given in headers["webhook-signature"].split()
    )
