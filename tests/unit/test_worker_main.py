"""The worker loop's reaction to outages, with fakes for its seams (no services)."""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from typing import Any

import pytest
from kafka.errors import KafkaConnectionError
from sqlalchemy.exc import OperationalError

import worker.main
from inferfleet.errors import QueueUnavailableError
from inferfleet.settings import load_settings
from worker.health import Readiness
from worker.main import Worker
from worker.metrics import WorkerMetrics


@dataclass
class FakeModel:
    name: str = "fraud"
    version: int = 1
    provider: str = "CPUExecutionProvider"


class FakeStore:
    changes = 0

    def resolve(self, name: str) -> FakeModel:
        return FakeModel(name=name)

    def get(self, name: str, version: int) -> FakeModel:
        return FakeModel(name=name, version=version)

    def pin(self, keys: Any) -> None:
        pass

    def loaded(self) -> list[FakeModel]:
        return [FakeModel()]


@dataclass
class FakeConsumer:
    rewinds: int = 0
    closed: bool = False
    # Errors the next rewinds raise, in turn (a broker still away answers `committed()`
    # with KafkaConnectionError).
    rewind_errors: list[Exception] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    def rewind(self) -> None:
        self.rewinds += 1
        if self.rewind_errors:
            self.events.append("rewind failed")
            raise self.rewind_errors.pop(0)
        self.events.append("rewind")

    def send(self, records: list[Any]) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def make_worker(
    monkeypatch: pytest.MonkeyPatch, consumer: FakeConsumer, outcomes: list[Exception | None]
) -> Worker:
    monkeypatch.setattr(worker.main, "ensure_topics", lambda *a, **k: None)
    w = Worker(
        load_settings(),
        engine=None,  # type: ignore[arg-type]
        store=FakeStore(),  # type: ignore[arg-type]
        metrics=WorkerMetrics(),
        readiness=Readiness(),
        consumer_factory=lambda settings, topics: consumer,  # type: ignore[arg-type,return-value]
    )
    monkeypatch.setattr(w._stop, "wait", lambda timeout: False)  # no real back-off in tests

    def advance() -> None:
        outcome = outcomes.pop(0)
        consumer.events.append("batch" if w.readiness.get()[0] else "batch while not ready")
        if not outcomes:
            w.stop()
        if outcome is not None:
            raise outcome

    monkeypatch.setattr(w, "advance", advance)
    return w


def test_a_database_outage_rewinds_and_retries_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    consumer = FakeConsumer()
    outage = OperationalError("UPDATE jobs", {}, Exception("connection refused"))
    w = make_worker(monkeypatch, consumer, [outage, outage, None, None])

    w.run()

    assert consumer.events == [
        "batch",
        "rewind",
        "batch while not ready",
        "rewind",
        "batch while not ready",
        "batch",
    ]
    assert consumer.closed
    assert w.readiness.get()[0] is True


@pytest.mark.parametrize(
    "error",
    [
        KafkaConnectionError("the offset commit lost its broker"),
        QueueUnavailableError("Kafka did not acknowledge the retry"),
    ],
    ids=["commit", "produce"],
)
def test_a_broker_outage_waits_rewinds_and_goes_on(
    monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    # The broker is away for the batch and for the first two rewinds (`committed()`).
    away = KafkaConnectionError("no broker for committed()")
    consumer = FakeConsumer(rewind_errors=[away, away])
    w = make_worker(monkeypatch, consumer, [error, None, None])

    w.run()

    assert consumer.events == [
        "batch",
        "rewind failed",
        "rewind failed",
        "rewind",
        "batch while not ready",
        "batch",
    ]
    assert consumer.closed
    assert w.readiness.get()[0] is True


def test_an_unexpected_error_is_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    consumer = FakeConsumer()
    w = make_worker(monkeypatch, consumer, [RuntimeError("bug"), None])

    with pytest.raises(RuntimeError, match="bug"):
        w.run()

    assert consumer.rewinds == 0


def test_a_broker_away_at_start_is_waited_for_out_of_the_group(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumer = FakeConsumer()
    w = make_worker(monkeypatch, consumer, [None])
    tries: list[bool] = []

    def ensure_topics(*args: Any, **kwargs: Any) -> None:
        tries.append(w.readiness.get()[0])
        if len(tries) < 3:
            raise KafkaConnectionError("no broker answered the bootstrap")

    monkeypatch.setattr(worker.main, "ensure_topics", ensure_topics)

    w.run()

    assert tries == [False, False, False], "not ready until it joined the group"
    assert consumer.events == ["batch"]
    assert w.readiness.get()[0] is True


def test_what_the_worker_loaded_is_left_out_of_later_collections(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loaded: list[FakeModel] = []

    def get(store: FakeStore, name: str, version: int) -> FakeModel:
        loaded.append(FakeModel(name=name, version=version))
        return loaded[-1]

    monkeypatch.setattr(FakeStore, "get", get)
    w = make_worker(monkeypatch, FakeConsumer(), [None])
    try:
        assert w.start()
        assert loaded, "the worker loaded no model"
        # Frozen: no generation the collector scans holds it any more.
        scanned = {id(o) for o in gc.get_objects()}
        assert not any(id(model) in scanned for model in loaded)
    finally:
        gc.unfreeze()
