"""The worker loop tells its observer each step of a batch and counts nothing itself;
`BatchLog` turns what it is told into metrics (fakes for Kafka and Postgres)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from inferfleet.errors import InferfleetError
from inferfleet.jobs import messages
from inferfleet.jobs.messages import JobMessage
from inferfleet.settings import load_settings
from worker import persist
from worker.batching import Outcome
from worker.health import Readiness
from worker.isolation import Redelivered
from worker.main import Worker
from worker.metrics import WorkerMetrics
from worker.observe import BatchLog
from worker.persist import Claim, Written
from worker.plan import Plan
from worker.summary import BatchSummary, Handled

TOPIC = "inferfleet.jobs.fraud.interactive"


def job(job_id: str) -> JobMessage:
    return JobMessage(
        job_id=job_id,
        tenant="acme",
        model="fraud",
        version=1,
        inputs={"x": 1},
        input_uri=None,
        enqueued_at=datetime(2026, 1, 2, tzinfo=UTC),
        deadline=None,
        request_id=None,
    )


@dataclass(frozen=True)
class FakeRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass
class FakeConsumer:
    records: list[FakeRecord]
    events: list[str] = field(default_factory=list)

    def poll(self) -> list[FakeRecord]:
        return self.records

    def send(self, records: Sequence[Any]) -> None:
        self.events.extend(f"send {r.topic} {r.key.decode()}" for r in records)

    def commit(self) -> None:
        self.events.append("commit")


class LoadedStore:
    def state(self, name: str, version: int) -> str:
        return "loaded"


@dataclass
class Recorder:
    """An observer that writes down what it is told."""

    events: list[str] = field(default_factory=list)
    summaries: list[BatchSummary] = field(default_factory=list)

    def batch_started(self, records: Sequence[Any]) -> None:
        self.events.append(f"started {len(records)}")

    def planned(self, plan: Plan) -> None:
        run = ",".join(j.job_id for j in plan.run)
        alone = ",".join(j.job_id for j in plan.alone)
        self.events.append(f"planned run={run} alone={alone}")

    def inference(self, model: str, version: int) -> AbstractContextManager[Any]:
        return nullcontext()

    def version_unavailable(self, model: str, version: int, error: Exception) -> None:
        self.events.append(f"unavailable {model} v{version}")

    def job_failed(self, job: JobMessage, error: Mapping[str, str]) -> None:
        self.events.append(f"failed {job.job_id}")

    def batch_done(self, batch: Handled, summary: BatchSummary) -> None:
        self.events.append("done")
        self.summaries.append(summary)


def test_the_loop_tells_its_observer_each_step(monkeypatch: pytest.MonkeyPatch) -> None:
    polled = ["a", "bad", "r", "late", "gone"]
    records = [
        FakeRecord(TOPIC, 0, i, j.encode(), messages.encode(job(j))) for i, j in enumerate(polled)
    ]
    records.append(FakeRecord(TOPIC, 0, 9, None, b"{not json"))
    claim = Claim(
        taken={"a": 1, "bad": 3},
        expired={"late"},
        redelivered={"r": Redelivered(1, died_alone=False)},
    )
    monkeypatch.setattr(persist, "claim", lambda engine, ids, **kw: claim)
    monkeypatch.setattr(persist, "take_alone", lambda engine, job_id, **kw: 2)
    monkeypatch.setattr(
        persist, "finish", lambda engine, final, **kw: Written({o.job_id for o in final})
    )
    observer = Recorder()
    w = Worker(
        load_settings(),
        engine=None,  # type: ignore[arg-type]
        store=LoadedStore(),  # type: ignore[arg-type]
        metrics=WorkerMetrics(),
        readiness=Readiness(),
        s3=object(),
        observer=observer,
    )

    def outcomes(jobs: Sequence[JobMessage]) -> list[Outcome]:
        error = {"type": "invalid_input", "message": "no"}
        return [
            Outcome(j.job_id, error=error, retriable=False)
            if j.job_id == "bad"
            else Outcome(j.job_id, outputs={"y": 1})
            for j in jobs
        ]

    monkeypatch.setattr(w, "_outcomes", outcomes)
    consumer = FakeConsumer(records)

    summary = w.handle_batch(consumer)  # type: ignore[arg-type]

    assert observer.events == ["started 6", "planned run=a,bad alone=r", "done"]
    assert observer.summaries == [summary]
    assert summary == BatchSummary(
        records=6,
        claimed=3,
        succeeded=2,
        failed=1,
        retried=0,
        expired=1,
        skipped=1,
        dead_lettered=2,
    )
    assert consumer.events == [
        f"send {TOPIC}.dlq bad",
        f"send {TOPIC}.dlq ",
        "commit",
    ]


def test_batch_log_counts_jobs_by_model_and_end(monkeypatch: pytest.MonkeyPatch) -> None:
    metrics = WorkerMetrics()
    jobs = [job("a"), job("b"), job("late")]
    plan = Plan(
        run=jobs[:2],
        attempts={"a": 1, "b": 1},
        put_back=[],
        dead_letter=[],
        alone=[],
        redelivered={},
        expired=[jobs[2]],
        claimable=jobs,
        only_waiting=False,
    )
    final = [
        Outcome("a", outputs={"y": 1}),
        Outcome("b", error={"type": "inference_error", "message": "no"}),
    ]
    observer = BatchLog(metrics)
    batch_topic = "inferfleet.jobs.fraud.batch"
    observer.batch_started(
        [
            FakeRecord(TOPIC, 0, 0, b"a", b""),
            FakeRecord(batch_topic, 0, 0, b"b", b""),
            FakeRecord(TOPIC, 0, 1, b"late", b""),
        ]
    )
    summary = BatchSummary(3, 2, 1, 1, 0, 1, 0, 1)
    before = datetime.now(UTC)

    observer.batch_done(Handled(3, plan, final, 0, 2), summary)

    def value(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    assert value("inferfleet_worker_jobs_total", model="fraud", status="succeeded") == 1
    assert value("inferfleet_worker_jobs_total", model="fraud", status="failed") == 1
    assert value("inferfleet_worker_jobs_total", model="fraud", status="expired") == 1
    assert value("inferfleet_worker_dead_letter_records_total") == 1
    assert value("inferfleet_worker_batch_records_sum") == 3
    assert value("inferfleet_worker_consumed_records_total", topic=TOPIC) == 2
    assert value("inferfleet_worker_consumed_records_total", topic=batch_topic) == 1
    # The two jobs that ended with a result, each on its lane, counted from submission.
    submitted = job("a").enqueued_at
    for lane in ("interactive", "batch"):
        labels = {"model": "fraud", "lane": lane}
        assert value("inferfleet_worker_submit_to_result_seconds_count", **labels) == 1
        waited = value("inferfleet_worker_submit_to_result_seconds_sum", **labels)
        assert waited is not None
        assert waited >= (before - submitted).total_seconds()


def test_a_batch_of_one_lane_times_every_result_on_that_lane() -> None:
    metrics = WorkerMetrics()
    jobs = [job("a"), job("b")]
    plan = Plan(
        run=jobs,
        attempts={"a": 1, "b": 1},
        put_back=[],
        dead_letter=[],
        alone=[],
        redelivered={},
        expired=[],
        claimable=jobs,
        only_waiting=False,
    )
    observer = BatchLog(metrics)
    observer.batch_started(
        [FakeRecord(TOPIC, 0, i, j.job_id.encode(), b"") for i, j in enumerate(jobs)]
    )

    observer.batch_done(
        Handled(2, plan, [Outcome("a", outputs={}), Outcome("b", outputs={})], 0, 2),
        BatchSummary(2, 2, 2, 0, 0, 0, 0, 0),
    )

    labels = {"model": "fraud", "lane": "interactive"}
    name = "inferfleet_worker_submit_to_result_seconds_count"
    assert metrics.registry.get_sample_value(name, labels) == 2


class UnloadableStore:
    def state(self, name: str, version: int) -> str:
        return "failed"

    def get(self, name: str, version: int) -> Any:
        raise InferfleetError(f"{name} has no version {version}")


def test_a_version_that_cannot_load_is_told_to_the_observer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    records = [FakeRecord(TOPIC, 0, 0, b"a", messages.encode(job("a")))]
    monkeypatch.setattr(persist, "claim", lambda engine, ids, **kw: Claim(taken={"a": 3}))
    monkeypatch.setattr(
        persist, "finish", lambda engine, final, **kw: Written({o.job_id for o in final})
    )
    observer = Recorder()
    w = Worker(
        load_settings(),
        engine=None,  # type: ignore[arg-type]
        store=UnloadableStore(),  # type: ignore[arg-type]
        metrics=WorkerMetrics(),
        readiness=Readiness(),
        s3=object(),
        observer=observer,
    )
    w.payloads._schemas[("fraud", 1)] = {"type": "object"}  # the registry, already read

    summary = w.handle_batch(FakeConsumer(records))  # type: ignore[arg-type]

    assert observer.events == [
        "started 1",
        "planned run=a alone=",
        "unavailable fraud v1",
        "done",
    ]
    assert summary is not None
    assert summary.failed == 1
