"""The worker's pipeline: the consumer side polls and commits, the execution side runs
units in turn (a fake Kafka consumer, a fake execution; no services)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy.exc import OperationalError

import worker.units
from worker.pipeline import Pipeline
from worker.units import Partition, Unit

INTERACTIVE = "inferfleet.jobs.fraud.interactive"
BATCH = "inferfleet.jobs.fraud.batch"


@dataclass(frozen=True)
class Rec:
    topic: str
    partition: int
    offset: int
    key: bytes | None = None
    value: bytes = b"not a job"


def records(topic: str, start: int, count: int = 2) -> list[Rec]:
    return [Rec(topic, 0, offset) for offset in range(start, start + count)]


@dataclass
class Source:
    """Polls hand out `polls` in turn; commits are written down."""

    polls: list[list[Rec]] = field(default_factory=list)
    interactive: list[list[Rec]] = field(default_factory=list)
    commits: list[dict[Partition, int]] = field(default_factory=list)
    waits: list[int] = field(default_factory=list)  # each poll_interactive's timeout
    polled: int = 0
    on_revoke: Callable[[], None] | None = None

    def poll(self) -> list[Any]:
        if not self.polls:
            return []
        self.polled += 1
        return self.polls.pop(0)

    def poll_interactive(self, timeout_ms: int) -> list[Any]:
        self.waits.append(timeout_ms)
        return self.interactive.pop(0) if self.interactive else []

    def commit_offsets(self, offsets: dict[Partition, int]) -> bool:
        self.commits.append(dict(offsets))
        return True


class Execution:
    """Runs units, each only once the test lets it (`release`); `fail` makes units
    starting at that offset raise an outage."""

    def __init__(self) -> None:
        self.started: list[int] = []
        self.finished: list[int] = []
        self.gate = threading.Semaphore(0)
        self.fail_at: int | None = None

    def __call__(self, unit: Unit) -> None:
        first = unit.records[0].offset
        self.started.append(first)
        self.gate.acquire()
        if first == self.fail_at:
            raise OperationalError("UPDATE jobs", {}, Exception("connection refused"))
        self.finished.append(first)

    def release(self, units: int = 1) -> None:
        for _ in range(units):
            self.gate.release()


def until(done: Callable[[], bool], step: Callable[[], None] = lambda: None) -> None:
    deadline = time.monotonic() + 10
    while not done():
        assert time.monotonic() < deadline, "the pipeline did not get there"
        step()
        time.sleep(0.001)


@pytest.fixture
def execution() -> Execution:
    return Execution()


def make(source: Source, execution: Execution, depth: int = 1) -> Pipeline:
    pipeline = Pipeline(source, execution, depth)
    assert source.on_revoke == pipeline.finish_handed_off
    return pipeline


def test_the_next_unit_is_polled_while_one_runs_and_commits_wait_for_the_write(
    execution: Execution,
) -> None:
    source = Source(polls=[records(BATCH, 0), records(BATCH, 2), records(BATCH, 4)])
    pipeline = make(source, execution)

    pipeline.advance()
    until(lambda: execution.started == [0])
    pipeline.advance()  # unit 0 still runs: unit 2 is polled and waits
    assert source.polled == 2
    for _ in range(5):
        pipeline.advance()
    assert source.polled == 2, "one unit running, one waiting: no more polls"
    assert source.commits == [], "nothing is committed before it is written"

    execution.release()
    until(lambda: source.commits == [{(BATCH, 0): 2}], pipeline.advance)
    execution.release(2)
    until(lambda: len(source.commits) == 3, pipeline.advance)
    assert source.commits == [{(BATCH, 0): 2}, {(BATCH, 0): 4}, {(BATCH, 0): 6}]
    assert execution.finished == [0, 2, 4]
    pipeline.close()


class Gated:
    """Runs units, each once the test opens its gate (by its first offset)."""

    def __init__(self) -> None:
        self.started: list[int] = []
        self.finished: list[int] = []
        self.gates: dict[int, threading.Event] = {}
        self.lock = threading.Lock()

    def gate(self, first: int) -> threading.Event:
        with self.lock:
            return self.gates.setdefault(first, threading.Event())

    def __call__(self, unit: Unit) -> None:
        first = unit.records[0].offset
        self.started.append(first)
        self.gate(first).wait()
        self.finished.append(first)


def test_interactive_records_run_beside_the_batch_unit_in_hand() -> None:
    execution = Gated()
    source = Source(polls=[records(BATCH, 0), records(BATCH, 2)])
    pipeline = Pipeline(source, execution, 1)
    pipeline.advance()
    until(lambda: execution.started == [0])
    pipeline.advance()  # batch unit 2 waits
    source.interactive = [records(INTERACTIVE, 100)]

    pipeline.advance()  # the batch queue is full: it looks at the interactive lane

    assert source.polled == 2, "no poll of both lanes while the batch queue is full"
    assert source.waits == [20], "the interactive lane's poll waits for its records"
    until(lambda: execution.started == [0, 100])  # not after the batch unit: beside it
    execution.gate(100).set()
    until(lambda: source.commits == [{(INTERACTIVE, 0): 102}], pipeline.advance)
    assert execution.finished == [100], "the batch unit in hand still runs"
    execution.gate(0).set()
    execution.gate(2).set()
    until(lambda: len(source.commits) == 3, pipeline.advance)
    assert execution.finished == [100, 0, 2]
    assert source.commits[1:] == [{(BATCH, 0): 2}, {(BATCH, 0): 4}]
    pipeline.close()


def test_a_poll_of_both_lanes_runs_them_on_their_own_threads() -> None:
    execution = Gated()
    both = records(BATCH, 0) + records(INTERACTIVE, 50)
    source = Source(polls=[both])
    pipeline = Pipeline(source, execution, 1)

    pipeline.advance()

    until(lambda: sorted(execution.started) == [0, 50])
    execution.gate(50).set()
    until(lambda: source.commits == [{(INTERACTIVE, 0): 52}], pipeline.advance)
    execution.gate(0).set()
    pipeline.drain()
    assert source.commits[1:] == [{(BATCH, 0): 2}]
    pipeline.close()


def test_a_failed_unit_halts_the_execution_drops_the_waiting_and_is_raised(
    execution: Execution,
) -> None:
    execution.fail_at = 0
    source = Source(polls=[records(BATCH, 0), records(BATCH, 2)])
    pipeline = make(source, execution)
    pipeline.advance()
    until(lambda: execution.started == [0])
    pipeline.advance()  # unit 2 waits behind the unit that is about to fail
    execution.release()

    with pytest.raises(OperationalError):
        until(lambda: False, pipeline.advance)
    with pytest.raises(OperationalError):
        pipeline.advance()  # raised again until the caller rewinds

    pipeline.quiesce()  # the caller then rewinds to the committed offsets
    pipeline.resume()
    source.polls = [records(BATCH, 0)]  # the rewind brings the records back
    execution.fail_at = None
    execution.release()
    until(lambda: source.commits == [{(BATCH, 0): 2}], pipeline.advance)
    assert execution.started == [0, 0], "the dropped unit never ran"
    pipeline.close()


def test_drain_finishes_and_commits_every_unit_handed_off(execution: Execution) -> None:
    source = Source(polls=[records(BATCH, 0), records(BATCH, 2)])
    pipeline = make(source, execution)
    pipeline.advance()
    until(lambda: execution.started == [0])
    pipeline.advance()
    execution.release(2)

    pipeline.drain()

    assert execution.finished == [0, 2]
    assert source.commits == [{(BATCH, 0): 2}, {(BATCH, 0): 4}]
    pipeline.close()


def test_a_revocation_finishes_and_commits_what_was_handed_off(execution: Execution) -> None:
    source = Source(polls=[records(BATCH, 0), records(BATCH, 2)])
    pipeline = make(source, execution)
    pipeline.advance()
    until(lambda: execution.started == [0])
    pipeline.advance()
    execution.release(2)

    assert source.on_revoke is not None
    source.on_revoke()  # as kafka-python calls it inside a poll, before a rebalance

    assert source.commits == [{(BATCH, 0): 2}, {(BATCH, 0): 4}]
    pipeline.close()


def test_a_revocation_after_a_failure_leaves_it_for_the_loop(execution: Execution) -> None:
    execution.fail_at = 0
    source = Source(polls=[records(BATCH, 0)])
    pipeline = make(source, execution)
    pipeline.advance()
    execution.release()

    assert source.on_revoke is not None
    source.on_revoke()

    assert source.commits == []
    with pytest.raises(OperationalError):
        pipeline.advance()
    pipeline.close()


def test_the_gauge_counts_the_units_waiting(execution: Execution) -> None:
    registry = CollectorRegistry()
    waiting = Gauge("waiting", "units waiting", registry=registry)
    source = Source(polls=[records(BATCH, 0), records(BATCH, 2)])
    pipeline = Pipeline(source, execution, 1, waiting)
    pipeline.advance()
    until(lambda: execution.started == [0])
    pipeline.advance()

    assert registry.get_sample_value("waiting") == 1
    execution.release(2)
    pipeline.drain()
    assert registry.get_sample_value("waiting") == 0
    pipeline.close()


def test_units_are_decoded_before_the_hand_off_but_batch_ones_beside_interactive_jobs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    decoded: list[tuple[int, str]] = []  # (first offset, the thread that decoded it)
    decode = worker.units.decode_records

    def recorded(records: list[Any]) -> Any:
        decoded.append((records[0].offset, threading.current_thread().name))
        return decode(records)

    monkeypatch.setattr(worker.units, "decode_records", recorded)
    execution = Gated()
    source = Source(polls=[records(BATCH, 0), records(INTERACTIVE, 50), records(BATCH, 2)])
    pipeline = Pipeline(source, lambda unit: execution(unit) if unit.jobs is not None else None)
    consumer_side = threading.current_thread().name

    pipeline.advance()  # batch unit 0: no interactive unit yet
    assert decoded == [(0, consumer_side)], "decoded before it was handed off"
    execution.gate(0).set()
    until(lambda: execution.finished == [0], pipeline.advance)
    until(lambda: execution.started[-1:] == [50], pipeline.advance)
    assert decoded[1] == (50, consumer_side)
    until(lambda: execution.started[-1:] == [2], pipeline.advance)  # beside interactive jobs
    assert decoded[2] == (2, "worker-execute-batch")
    execution.gate(50).set()
    execution.gate(2).set()
    pipeline.drain()
    assert [offset for offset, _ in decoded] == [0, 50, 2], "each unit decoded once"
    pipeline.close()


def test_the_gil_changes_hands_sooner_while_interactive_jobs_come_beside_a_batch(
    execution: Execution,
) -> None:
    before = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    try:
        source = Source(polls=[records(BATCH, 0)], interactive=[])
        pipeline = make(source, execution)
        pipeline.advance()
        assert sys.getswitchinterval() == pytest.approx(0.005), "a batch unit alone"
        source.polls = [records(INTERACTIVE, 10)]
        execution.release(2)
        until(lambda: sorted(execution.finished) == [0, 10], pipeline.advance)
        assert sys.getswitchinterval() < 0.005
        pipeline.drain()
        pipeline.close()
        assert sys.getswitchinterval() == pytest.approx(0.005), "put back on close"
    finally:
        sys.setswitchinterval(before)
