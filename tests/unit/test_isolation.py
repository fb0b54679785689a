"""worker.isolation: a failure of one job, whatever it raises and wherever, fails that
job alone; redelivered jobs run alone and only a job that killed its worker alone is
failed unrun (fakes for the services)."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from sqlalchemy.exc import OperationalError

import worker.payloads
from inferfleet import jsondepth
from inferfleet.jobs.messages import JobMessage
from inferfleet.settings import load_settings
from worker.batching import Outcome
from worker.health import Readiness
from worker.isolation import (
    CRASHED,
    TRANSIENT,
    Redelivered,
    doomed,
    guarded,
    run_alone,
)
from worker.main import Worker
from worker.metrics import WorkerMetrics


class SurpriseError(Exception):
    """An exception type no code in the project knows about."""


def job(job_id: str, uri: str | None = None, inputs: dict[str, Any] | None = None) -> JobMessage:
    return JobMessage(
        job_id=job_id,
        tenant="acme",
        model="fraud",
        version=1,
        inputs=inputs,
        input_uri=uri,
        enqueued_at=datetime(2026, 1, 2, tzinfo=UTC),
        deadline=None,
        request_id=None,
    )


# --- the pure rules ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempts", "died_alone", "expected"),
    [
        (3, True, True),  # died running alone, attempts used up
        (4, True, True),
        (2, True, False),  # died alone, but has an attempt left: runs alone again
        (3, False, False),  # only ever ran beside others: never failed unrun
        (9, False, False),
        (1, False, False),
    ],
)
def test_only_a_job_whose_worker_died_running_it_alone_is_failed_unrun(
    attempts: int, died_alone: bool, expected: bool
) -> None:
    assert doomed(Redelivered(attempts, died_alone), max_attempts=3) is expected


def test_guarded_fails_only_the_jobs_that_raise_whatever_they_raise() -> None:
    jobs = [job(f"job-{i}") for i in range(33)]

    def run(batch: Sequence[JobMessage]) -> list[Outcome]:
        if any(j.job_id in ("job-5", "job-30") for j in batch):
            raise SurpriseError("nobody expected this")
        return [Outcome(j.job_id, outputs={"ok": True}) for j in batch]

    outcomes = guarded(jobs, run, "worker_error", "running the job")

    assert [o.job_id for o in outcomes] == [j.job_id for j in jobs]
    failed = {o.job_id: o for o in outcomes if o.error is not None}
    assert set(failed) == {"job-5", "job-30"}
    for o in failed.values():
        assert o.error == {
            "type": "worker_error",
            "message": "running the job failed: SurpriseError: nobody expected this",
        }
        assert o.retriable, "an unforeseen failure is retried while attempts remain"


def test_guarded_lets_an_outage_fail_the_whole_batch() -> None:
    def run(batch: Sequence[JobMessage]) -> list[Outcome]:
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    with pytest.raises(TRANSIENT):
        guarded([job("a"), job("b")], run, "worker_error", "running the job")


@dataclass
class FakeRunner:
    """Takes, runs and records jobs in memory; `poison` raises nothing but fails."""

    running: set[str]
    attempts: dict[str, int]
    events: list[str] = field(default_factory=list)

    def take_alone(self, job_id: str, counted: bool = True) -> int | None:
        if job_id not in self.running:
            return None
        self.attempts[job_id] += counted
        self.events.append(f"take {job_id}" if counted else f"take {job_id} uncounted")
        return self.attempts[job_id]

    def run_taken(
        self, jobs: Sequence[JobMessage], attempts: Mapping[str, int]
    ) -> tuple[list[Outcome], list[str]]:
        assert len(jobs) == 1, "a redelivered job always runs alone"
        self.events.append(f"run {jobs[0].job_id}")
        return [Outcome(jobs[0].job_id, outputs={"ok": True})], []

    def record(self, jobs: Sequence[JobMessage], final: list[Outcome], retry: list[str]) -> int:
        self.events.append(f"record {jobs[0].job_id}")
        return len(final)


def test_redelivered_jobs_run_one_at_a_time_and_only_the_doomed_one_fails_unrun() -> None:
    jobs = [job("a"), job("poison"), job("b"), job("finished-elsewhere")]
    found = {
        "a": Redelivered(1, died_alone=False),
        "poison": Redelivered(3, died_alone=True),
        "b": Redelivered(3, died_alone=False),  # retried twice, then a neighbour crashed
        "finished-elsewhere": Redelivered(1, died_alone=False),
    }
    runner = FakeRunner(running={"a", "poison", "b"}, attempts={"a": 1, "poison": 3, "b": 3})

    final, retry = run_alone(jobs, found, max_attempts=3, runner=runner)

    assert runner.events == [
        "take a",
        "run a",
        "record a",
        "take poison uncounted",  # failed unrun, attempts unchanged
        "record poison",
        "take b",
        "run b",
        "record b",
    ]
    assert retry == []
    by_id = {o.job_id: o for o in final}
    assert set(by_id) == {"a", "poison", "b"}
    assert by_id["a"].error is None
    assert by_id["b"].error is None
    error = by_id["poison"].error
    assert error is not None
    assert error["type"] == CRASHED
    assert "3 attempts" in error["message"]
    assert not by_id["poison"].retriable
    assert runner.attempts == {"a": 2, "poison": 3, "b": 4}


# --- every stage of one job, with an exception nobody foresaw ----------------------


class Explosive(dict[str, Any]):
    """An output value whose JSON encoding raises `SurpriseError`."""

    def items(self) -> Any:
        raise SurpriseError("cannot encode this")


@dataclass
class FakeS3:
    objects: dict[str, bytes]

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803 - boto3's names
        uri = f"s3://{Bucket}/{Key}"
        if self.objects[uri] == b"FETCH":
            raise SurpriseError("the object store client broke")
        data = self.objects[uri]
        return {"Body": io.BytesIO(data), "ContentLength": len(data)}


@dataclass
class FakeModel:
    """A loaded model whose preprocessing or session raises for a marked row."""

    name: str = "fraud"
    version: int = 1
    provider: str = "CPUExecutionProvider"
    batch_size: int = 8
    output_names: list[str] = field(default_factory=lambda: ["y"])
    length: Any = None

    def preprocess(self, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
        if any(row["x"] == "PREPROCESS" for row in rows):
            raise SurpriseError("a tokenizer fell over")
        return [row["x"] for row in rows]

    def session(self, feeds: list[Any]) -> list[Any]:
        if "INFERENCE" in feeds:
            raise SurpriseError("the runtime refused")
        return [np.array([Explosive(a=1) if x == "ENCODE" else 2 * x for x in feeds], dtype=object)]

    def run(self, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
        return self.session(self.preprocess(rows))


class FakeStore:
    def get(self, name: str, version: int) -> FakeModel:
        return FakeModel()


STAGES = ["fetch", "parse", "validate", "preprocess", "inference", "encode"]


@pytest.mark.parametrize("stage", STAGES)
def test_an_unforeseen_exception_at_any_stage_fails_that_job_alone(
    stage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = {
        f"s3://inferfleet/tenants/acme/{i}.json": json.dumps({"x": i}).encode() for i in range(20)
    }
    poison_uri = "s3://inferfleet/tenants/acme/7.json"
    objects[poison_uri] = {
        "fetch": b"FETCH",
        "parse": b"PARSE",
        "validate": b'{"x": "VALIDATE"}',
        "preprocess": b'{"x": "PREPROCESS"}',
        "inference": b'{"x": "INFERENCE"}',
        "encode": b'{"x": "ENCODE"}',
    }[stage]
    real_loads = jsondepth.loads

    def loads(data: str | bytes, limit: int = jsondepth.MAX_DEPTH) -> Any:
        if data == b"PARSE":
            raise SurpriseError("the parser broke")
        return real_loads(data, limit)

    real_validate = worker.payloads.validate_instance

    def validate(validator: Any, instance: Any, prefix: tuple[str | int, ...] = ()) -> Any:
        if instance == {"x": "VALIDATE"}:
            raise SurpriseError("the validator broke")
        return real_validate(validator, instance, prefix)

    monkeypatch.setattr(jsondepth, "loads", loads)
    monkeypatch.setattr(worker.payloads, "validate_instance", validate)
    settings = load_settings()
    w = Worker(
        settings,
        engine=None,  # type: ignore[arg-type]
        store=FakeStore(),  # type: ignore[arg-type]
        metrics=WorkerMetrics(),
        readiness=Readiness(),
        s3=FakeS3(objects),
    )
    w.payloads._schemas[("fraud", 1)] = {"type": "object"}  # the registry, already read
    jobs = [job(f"job-{i}", uri=f"s3://inferfleet/tenants/acme/{i}.json") for i in range(20)]

    final, retry = w.run_taken(jobs, {j.job_id: 1 for j in jobs})

    assert retry == ["job-7"], "the failed job is tried again while it has attempts left"
    assert {o.job_id: o.outputs for o in final} == {
        f"job-{i}": {"y": 2 * i} for i in range(20) if i != 7
    }
    final, retry = w.run_taken(jobs, {j.job_id: settings.max_attempts for j in jobs})
    [failed] = [o for o in final if o.error is not None]
    assert failed.job_id == "job-7"
    assert failed.error is not None
    assert "SurpriseError" in failed.error["message"]
    assert retry == []
    assert sum(1 for o in final if o.error is None) == 19


def test_inputs_nested_too_deeply_fail_their_job_naming_the_uri_and_limit() -> None:
    deep = b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    just_too_deep = b'{"x": ' + b"[" * 64 + b"]" * 64 + b"}"
    deepest_allowed = b'{"x": ' + b"[" * 63 + b"]" * 63 + b"}"
    objects = {
        "s3://inferfleet/tenants/acme/deep.json": deep,
        "s3://inferfleet/tenants/acme/65.json": just_too_deep,
        "s3://inferfleet/tenants/acme/64.json": deepest_allowed,
    }
    w = Worker(
        load_settings(),
        engine=None,  # type: ignore[arg-type]
        store=FakeStore(),  # type: ignore[arg-type]
        metrics=WorkerMetrics(),
        readiness=Readiness(),
        s3=FakeS3(objects),
    )
    w.payloads._schemas[("fraud", 1)] = {"type": "object"}
    inline = [{"x": 1}]
    for _ in range(70):
        inline = [inline]
    jobs = [job(name, uri=uri) for name, uri in zip(["deep", "65", "64"], objects, strict=True)]
    jobs.append(job("inline", inputs={"x": inline}))

    ready, failed = w.payloads.fetch_inputs(jobs)

    assert [j.job_id for j in ready] == ["64"]
    errors = {o.job_id: o.error for o in failed if o.error is not None}
    assert set(errors) == {"deep", "65", "inline"}
    for name in ("deep", "65"):
        assert errors[name]["type"] == "invalid_input"
        assert f"s3://inferfleet/tenants/acme/{name}.json" in errors[name]["message"]
        assert "64" in errors[name]["message"]
    assert errors["inline"]["type"] == "invalid_input"
    assert all(not o.retriable for o in failed), "a too-deep input is final at once"
