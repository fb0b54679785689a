"""The worker's writes against the real Postgres: claim tokens guard every write of a
claimed job, and giving jobs back after an outage costs them no attempt."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select

from inferfleet.ids import new_job_id
from inferfleet.tables import jobs
from tests.integration.conftest import terminal_writes
from worker import persist
from worker.batching import Outcome
from worker.isolation import CRASHED, Redelivered

pytestmark = pytest.mark.integration

WINDOW_S = 3600.0


def queued(engine: Engine, count: int) -> list[str]:
    """`count` queued jobs of a model of this test's own, produced an hour ago."""
    model = f"t-{uuid.uuid4().hex[:10]}"
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    ids = [new_job_id() for _ in range(count)]
    with engine.begin() as conn:
        conn.execute(
            jobs.insert(),
            [
                {
                    "id": job_id,
                    "tenant": f"persist-{model}",
                    "model": model,
                    "version": 1,
                    "status": "queued",
                    "lane": "interactive",
                    "inputs": {"x": 1},
                    "metadata": {},
                    "produced_at": hour_ago,
                }
                for job_id in ids
            ],
        )
    return ids


def row(engine: Engine, job_id: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(jobs).where(jobs.c.id == job_id)).one()


def test_a_worker_that_lost_its_claim_writes_nothing(engine: Engine) -> None:
    done, retried, failed = queued(engine, 3)
    zombie, other = "zombie-token", "other-token"
    claim = persist.claim(engine, [done, retried, failed], token=zombie, retry_window_s=WINDOW_S)
    assert claim.taken == {done: 1, retried: 1, failed: 1}
    # The zombie stalled past its poll interval; the partitions' new owner found the
    # jobs still `running` and took each, as it takes any job a worker left running.
    for job_id in (done, retried, failed):
        assert persist.take_alone(engine, job_id, token=other) == 2

    lost = persist.finish(
        engine,
        [
            Outcome(done, outputs={"y": 1}),
            Outcome(failed, error={"type": "invalid_input", "message": "no"}, retriable=False),
        ],
        requeued=[retried],
        token=zombie,
        retry_window_s=WINDOW_S,
    )

    assert lost == persist.Written()
    for job_id in (done, retried, failed):
        r = row(engine, job_id)
        assert (r.status, r.claim_token, r.attempts, r.outputs) == ("running", other, 2, None)
    assert terminal_writes(engine, [done, retried, failed]) == {}

    written = persist.finish(
        engine,
        [Outcome(done, outputs={"y": 2})],
        requeued=[retried],
        token=other,
        retry_window_s=WINDOW_S,
    )
    assert written == persist.Written({done}, {retried})
    assert (row(engine, done).status, row(engine, done).outputs) == ("succeeded", {"y": 2})
    requeued = row(engine, retried)
    assert (requeued.status, requeued.claim_token) == ("queued", None)
    assert requeued.produced_at > datetime.now(UTC) - timedelta(minutes=1), "its retry's time"
    assert terminal_writes(engine, [done, retried, failed]) == {done: 1}


def test_jobs_given_back_after_an_outage_count_no_attempt(engine: Engine) -> None:
    batch, alone = queued(engine, 2)
    token = "worker-token"
    assert persist.claim(engine, [batch], token=token, retry_window_s=WINDOW_S).taken == {batch: 1}
    # `alone` was left running by a worker that died; this worker took it alone.
    assert persist.claim(engine, [alone], token="dead", retry_window_s=WINDOW_S).taken
    assert persist.take_alone(engine, alone, token=token) == 2

    assert persist.release(engine, [batch, alone], token="someone-else") == 0
    assert persist.release(engine, [batch, alone], token=token) == 2

    given = row(engine, batch)
    assert (given.status, given.attempts, given.claim_token) == ("queued", 0, None)
    given_alone = row(engine, alone)
    assert (given_alone.status, given_alone.attempts) == ("queued", 1)
    assert given_alone.error["type"] == CRASHED, "still to run alone"

    # The batch is polled again: the plain job is taken with its first attempt again,
    # the one that was running alone is offered to run alone again, not as a crash.
    again = persist.claim(engine, [batch, alone], token=token, retry_window_s=WINDOW_S)
    assert again.taken == {batch: 1}
    assert again.redelivered == {alone: Redelivered(1, died_alone=False)}
    assert persist.take_alone(engine, alone, token=token) == 2
    assert row(engine, alone).status == "running"
