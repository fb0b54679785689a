"""`inferfleet autoscale` end to end: a burst of jobs wakes the workers, they scale out,
drain the backlog and go back to zero, and every job ends exactly once.

The supervisor runs as a real process against the real Kafka, reading a ScaledObject
(tests/fixtures/autoscale/burst.yaml) for this test's own model topics and consumer
group, with intervals of seconds instead of minutes. Its decisions are read from its log
(one line per change, with the reason) and its metrics endpoint.

The offset reads KEDA's rules need are checked against the real Kafka too, on a topic
of each test's own whose log start retention (here `DeleteRecords`) has moved.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from string import Template

import httpx
import pytest
from kafka import KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.structs import OffsetAndMetadata
from sqlalchemy import Engine, text

from autoscaler.lag import PartitionOffsets, is_active, total_lag
from autoscaler.offsets import KafkaOffsets
from autoscaler.spec import KafkaTrigger
from inferfleet.settings import Settings
from tests.integration.conftest import (
    ROOT,
    TEST_DATABASE_URL,
    PublishModel,
    bearer,
    eventually,
    free_port,
    make_key,
    terminal_writes,
)

pytestmark = pytest.mark.integration

FIXTURE = ROOT / "tests" / "fixtures" / "autoscale" / "burst.yaml"
BURST = 3000
DECISION = re.compile(r" (keda|hpa): scale (\d+) -> (\d+): ")


@dataclass
class Supervisor:
    """The running `inferfleet autoscale` process and where to watch it."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    metrics_url: str

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def decisions(self) -> list[tuple[str, int, int]]:
        """(loop, from, to) of every change so far, in order."""
        return [(m[1], int(m[2]), int(m[3])) for m in DECISION.finditer(self.log())]

    def metric(self, name: str) -> float | None:
        try:
            body = httpx.get(self.metrics_url, timeout=2).text
        except httpx.TransportError:
            return None
        found = re.search(rf"^{re.escape(name)} (\S+)$", body, re.MULTILINE)
        return float(found[1]) if found else None

    def state(self) -> str:
        """What the autoscaler measured and decided last, for a failure's message."""
        names = (
            'inferfleet_autoscaler_lag_records{trigger="interactive"}',
            'inferfleet_autoscaler_lag_records{trigger="batch"}',
            "inferfleet_autoscaler_replicas",
            "inferfleet_autoscaler_stopping_replicas",
        )
        metrics = ", ".join(f"{name} {self.metric(name)}" for name in names)
        lines = [line for line in self.log().splitlines() if " autoscaler" in line]
        return f"{metrics}; decisions {self.decisions()}; last lines:\n" + "\n".join(lines[-8:])

    def alive(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"the autoscaler exited with {self.proc.returncode}:\n{self.log()}")
        return True


@pytest.fixture
def autoscale(
    settings: Settings, tmp_path: Path, kafka: str, publish_model: PublishModel
) -> Iterator[tuple[str, Supervisor]]:
    """A model of this test's own and the autoscaler scaling its workers."""
    model = publish_model().name
    group = f"autoscale-{uuid.uuid4().hex[:8]}"
    scaled_object = tmp_path / "scaledobject.yaml"
    scaled_object.write_text(
        Template(FIXTURE.read_text()).substitute(BOOTSTRAP=kafka, GROUP=group, MODEL=model)
    )
    port = free_port()
    env = {
        **os.environ,
        "INFERFLEET_DATABASE_URL": TEST_DATABASE_URL,
        "INFERFLEET_KAFKA_BOOTSTRAP": kafka,
        "INFERFLEET_MODEL_CACHE_DIR": str(tmp_path / "worker-cache"),
        "INFERFLEET_TOPIC_PARTITIONS": str(settings.topic_partitions),
        "INFERFLEET_INTRA_OP_THREADS": "1",
        # Small batches, so the backlog outlasts the scale-up on a fast machine too.
        "INFERFLEET_POLL_MAX_RECORDS": "25",
    }
    log_path = tmp_path / "autoscaler.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "inferfleet.cli",
                "autoscale",
                "--scaled-object",
                str(scaled_object),
                "--sync-period",
                "1",
                "--grace-period",
                "60",
                "--metrics-port",
                str(port),
                "--worker-log-dir",
                str(tmp_path / "workers"),
            ],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    supervisor = Supervisor(proc, log_path, f"http://127.0.0.1:{port}/metrics")
    try:
        yield model, supervisor
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for worker_log in sorted((tmp_path / "workers").glob("*.log")):
            print(f"--- {worker_log.name} (tail) ---")
            print("\n".join(worker_log.read_text(errors="replace").splitlines()[-15:]))
        print("--- autoscaler ---")
        print(supervisor.log())


def submit_burst(api_url: str, engine: Engine, model: str) -> list[str]:
    key = make_key(engine, f"t-{uuid.uuid4().hex[:10]}", "jobs")
    items = [
        {
            "inputs": {
                "transaction_amount": float(i % 500),
                "merchant_category": "electronics",
                "user_account_age_days": i % 3650,
                "hour_of_day": i % 24,
            }
        }
        for i in range(BURST)
    ]
    r = httpx.post(
        f"{api_url}/v1/jobs/bulk",
        json={"model": model, "items": items},
        headers=bearer(key),
        timeout=120,
    )
    assert r.status_code == 202, r.text
    ids: list[str] = r.json()["ids"]
    return ids


def statuses(engine: Engine, ids: list[str]) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT status, count(*) AS n FROM jobs WHERE id = ANY(:ids) GROUP BY status"),
            {"ids": ids},
        )
        return {r.status: r.n for r in rows}


@pytest.mark.timeout(600)
def test_a_burst_scales_from_zero_out_drains_and_returns_to_zero_losing_nothing(
    autoscale: tuple[str, Supervisor], api_url: str, engine: Engine
) -> None:
    model, supervisor = autoscale

    # Idle: the lag is measured (0) and nothing runs.
    eventually(
        lambda: (
            supervisor.alive()
            and supervisor.metric('inferfleet_autoscaler_lag_records{trigger="interactive"}') == 0
        ),
        "the autoscaler's first measurement",
        60,
    )
    assert supervisor.decisions() == []
    assert supervisor.metric("inferfleet_autoscaler_replicas") == 0

    ids = submit_burst(api_url, engine, model)

    def scaled_out() -> bool:
        supervisor.alive()
        return any(to >= 2 for _, _, to in supervisor.decisions())

    eventually(scaled_out, "the autoscaler to scale to 2 workers or more", 120)
    eventually(
        lambda: statuses(engine, ids).get("succeeded", 0) == BURST,
        f"all {BURST} jobs to succeed",
        240,
    )

    def back_to_zero() -> bool:
        supervisor.alive()
        changes = supervisor.decisions()
        return (
            bool(changes)
            and changes[-1][2] == 0
            and supervisor.metric("inferfleet_autoscaler_replicas") == 0
            and supervisor.metric("inferfleet_autoscaler_stopping_replicas") == 0
        )

    try:
        eventually(back_to_zero, "the workers to drain and stop", 120)
    except pytest.fail.Exception:
        pytest.fail(f"the workers did not drain and stop within 120 s: {supervisor.state()}")

    changes = supervisor.decisions()
    assert changes[0] == ("keda", 0, 1)
    assert max(to for _, _, to in changes) in (2, 3)  # maxReplicaCount is 3
    assert changes[-1][2] == 0
    assert statuses(engine, ids) == {"succeeded": BURST}
    assert set(terminal_writes(engine, ids).values()) == {1}
    # Every stopped worker drained and exited on its own, none was killed.
    exits = re.findall(r"worker \d+ stopped \(exit code (-?\d+)\)", supervisor.log())
    assert exits, supervisor.log()
    assert set(exits) == {"0"}, supervisor.log()


# --- offset reads against the real Kafka ----------------------------------------------

PER_PARTITION = 10
DELETED = 6  # records removed from partition 0, so its log starts at offset 6


@pytest.fixture
def retained_topic(kafka: str) -> Iterator[tuple[str, KafkaAdminClient]]:
    """A topic of 2 partitions with 10 records each, the first 6 of partition 0 deleted."""
    topic = f"autoscale-offsets-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka, request_timeout_ms=10_000)
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    producer = KafkaProducer(bootstrap_servers=kafka)
    try:
        for partition in (0, 1):
            for i in range(PER_PARTITION):
                producer.send(topic, f"m{i}".encode(), partition=partition)
        producer.flush(timeout=30)
        admin.delete_records({TopicPartition(topic, 0): DELETED})
        yield topic, admin
    finally:
        producer.close()
        admin.delete_topics([topic])
        admin.close()


def read_trigger(kafka: str, trigger: KafkaTrigger) -> tuple[PartitionOffsets, ...]:
    offsets = KafkaOffsets(Settings(kafka_bootstrap=kafka))
    try:
        reading = offsets.read(trigger)
    finally:
        offsets.close()
    assert reading.error is None, reading.error
    return reading.offsets


def test_an_uncommitted_partition_under_earliest_counts_only_what_retention_kept(
    kafka: str, retained_topic: tuple[str, KafkaAdminClient]
) -> None:
    topic, _ = retained_topic
    group = f"autoscale-{uuid.uuid4().hex[:8]}"
    earliest = KafkaTrigger("t", group, topic, lag_threshold=100, offset_reset_policy="earliest")

    offsets = read_trigger(kafka, earliest)

    assert offsets == (
        PartitionOffsets(topic, 0, PER_PARTITION, None, DELETED),
        PartitionOffsets(topic, 1, PER_PARTITION, None, 0),
    )
    # KEDA 2.21: 4 retained on partition 0 and 10 on partition 1 (20 before 2.21).
    assert total_lag(offsets, earliest, {}).metric == 14


def test_log_starts_are_read_only_where_keda_reads_them(
    kafka: str, retained_topic: tuple[str, KafkaAdminClient]
) -> None:
    topic, admin = retained_topic
    group = f"autoscale-{uuid.uuid4().hex[:8]}"
    latest = KafkaTrigger("t", group, topic, lag_threshold=100)
    to_zero = KafkaTrigger(
        "t",
        group,
        topic,
        lag_threshold=100,
        offset_reset_policy="earliest",
        scale_to_zero_on_invalid_offset=True,
    )
    earliest = KafkaTrigger("t", group, topic, lag_threshold=100, offset_reset_policy="earliest")

    assert [p.earliest for p in read_trigger(kafka, latest)] == [None, None]
    assert [p.earliest for p in read_trigger(kafka, to_zero)] == [None, None]
    admin.alter_group_offsets(group, {TopicPartition(topic, 1): OffsetAndMetadata(8, "", -1)})
    # A committed partition counts against its log end; only the other one's start is read.
    assert read_trigger(kafka, earliest) == (
        PartitionOffsets(topic, 0, PER_PARTITION, None, DELETED),
        PartitionOffsets(topic, 1, PER_PARTITION, 8, None),
    )


def test_a_group_committed_past_the_log_end_reports_zero_and_stays_inactive(
    kafka: str, retained_topic: tuple[str, KafkaAdminClient]
) -> None:
    topic, admin = retained_topic
    group = f"autoscale-{uuid.uuid4().hex[:8]}"
    trigger = KafkaTrigger("t", group, topic, lag_threshold=100)
    admin.alter_group_offsets(
        group,
        {
            TopicPartition(topic, 0): OffsetAndMetadata(PER_PARTITION + 15, "", -1),
            TopicPartition(topic, 1): OffsetAndMetadata(PER_PARTITION, "", -1),
        },
    )

    lag = total_lag(read_trigger(kafka, trigger), trigger, {})

    assert (lag.metric, lag.with_persistent, is_active(lag, trigger)) == (0, -15, False)
