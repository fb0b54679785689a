"""The pipelined worker on the real stack: an interactive job overtakes the batch units
waiting in the hand-off queue, and a rebalance moves partitions without a job run twice.

A real worker with full 2,000-record polls and two units queued beside the one running
works through a batch backlog; an interactive job is then submitted over the API. It
must finish before the backlog drains, and behind at most the unit that was running
and one more: not behind the units waiting in the queue. Nothing is timed: batch jobs
are counted by `completed_at` against the interactive job's `produced_at` (its message
is on Kafka; on a busy machine the API may take a while to get there) and
`completed_at`.
"""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import Engine, text

from inferfleet.settings import Settings
from tests.integration.conftest import eventually, job_rows, terminal_writes
from tests.integration.test_jobs import random_inputs
from tests.integration.test_lanes import INPUTS, finished, queue_batch
from tests.integration.test_worker import submit_bulk

pytestmark = pytest.mark.integration

BATCH_JOBS = 30_000
POLL = 2000
WAVE = 2000  # jobs submitted at a time to keep a backlog until the second worker joins

OVERTAKEN = text(
    """
    SELECT i.status,
           (SELECT count(*) FROM jobs b
             WHERE b.batch_id = :b AND b.completed_at > i.produced_at
               AND b.completed_at <= i.completed_at) AS batch_between,
           (SELECT max(completed_at) FROM jobs b WHERE b.batch_id = :b) > i.completed_at
               AS before_the_end
      FROM jobs i WHERE i.id = :id
    """
)


def test_an_interactive_job_overtakes_the_queued_batch_units(
    settings: Settings, engine: Engine, client: httpx.Client, publish_model, start_worker
) -> None:
    version = publish_model()
    batch_id = f"bat_{uuid.uuid4().hex}"
    queue_batch(settings, engine, version, batch_id, BATCH_JOBS)
    start_worker(
        version.name,
        INFERFLEET_POLL_MAX_RECORDS=str(POLL),
        INFERFLEET_WORKER_HANDOFF_DEPTH="2",
    ).wait_ready()
    eventually(lambda: finished(engine, batch_id) > 0, "the worker to start on the batch")

    r = client.post("/v1/jobs", json={"model": version.name, "inputs": INPUTS})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    eventually(
        lambda: finished(engine, batch_id) == BATCH_JOBS,
        "every batch job to finish",
        timeout=300,
    )

    with engine.connect() as conn:
        found = conn.execute(OVERTAKEN, {"b": batch_id, "id": job_id}).one()
    assert found.status == "succeeded"
    assert found.before_the_end, "the interactive job waited for the whole backlog"
    assert found.batch_between <= 2 * POLL, (
        f"{found.batch_between} batch jobs finished while the interactive job waited: "
        "it waited for the queued batch units too"
    )


def test_a_worker_joining_mid_backlog_takes_partitions_and_no_job_runs_twice(
    client: httpx.Client, publish_model, start_worker, engine: Engine
) -> None:
    model = publish_model()
    ids = submit_bulk(client, model.name, random_inputs(20_000, seed=21))
    group = f"workers-{model.name}"
    # Small polls make the backlog many units long; a short session timeout makes the
    # heartbeats that tell the first worker of the rebalance come often.
    small = {
        "INFERFLEET_POLL_MAX_RECORDS": "50",
        "INFERFLEET_WORKER_HANDOFF_DEPTH": "2",
        "INFERFLEET_SESSION_TIMEOUT_MS": "6000",
    }
    first = start_worker(model.name, group=group, **small)

    def succeeded() -> int:
        return sum(r.status == "succeeded" for r in job_rows(engine, model.name))

    eventually(lambda: succeeded() >= 200, "the first worker to finish some jobs", timeout=120)
    second = start_worker(model.name, group=group, **small)

    def second_took_jobs() -> bool:
        """Whether both workers have claimed jobs; until then the backlog is kept from
        running dry (however slowly the second worker starts), so the first is always
        mid-backlog when the rebalance comes."""
        rows = job_rows(engine, model.name)
        if len({r.claim_token for r in rows if r.claim_token}) == 2:
            return True
        if sum(r.status != "succeeded" for r in rows) < WAVE:
            ids.extend(submit_bulk(client, model.name, random_inputs(WAVE, seed=len(ids))))
        return False

    eventually(second_took_jobs, "the second worker to take partitions", timeout=180)
    eventually(lambda: succeeded() == len(ids), "every job to succeed", timeout=180)

    rows = job_rows(engine, model.name)
    # Before the rebalance the first worker finished and committed every unit it had
    # handed off, so the second never found one of its jobs still running.
    assert {r.attempts for r in rows} == {1}, "a job was claimed by both workers"
    assert len({r.claim_token for r in rows}) == 2
    assert set(terminal_writes(engine, ids).values()) == {1}
    assert first.proc.poll() is None, first.log()
    assert second.proc.poll() is None, second.log()
