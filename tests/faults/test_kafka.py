"""Kafka faults under load: a broker killed with SIGKILL and brought back, and the
leaders of the jobs topic's partitions moved to other brokers."""

from __future__ import annotations

import time

import pytest
from kafka import TopicPartition
from kafka.admin import KafkaAdminClient

from inferfleet.clients.topics import job_topic
from tests.faults.fleet import Fleet, Window, run_fault, wait_until

# A fault run takes minutes: its fleet starts, 20,000 jobs run, the audit waits for them.
pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]

BROKER_DOWN_S = 20.0


def leaders(bootstrap: str, topic: str) -> dict[int, tuple[int, list[int]]]:
    """Partition -> (leader, replicas) of `topic`, as the cluster reports them now."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        (described,) = admin.describe_topics([topic])
    finally:
        admin.close()
    return {
        p["partition_index"]: (p["leader_id"], list(p["replica_nodes"]))
        for p in described["partitions"]
    }


def test_a_broker_killed_with_sigkill_and_brought_back(fleet: Fleet) -> None:
    def kill_a_leader(fleet: Fleet) -> Window:
        node = leaders(fleet.stack.bootstrap, job_topic(fleet.model))[0][0]
        fleet.stack.stack("kafka3", "kill", str(node))
        began = time.monotonic()
        time.sleep(BROKER_DOWN_S)
        fleet.stack.stack("kafka3", "start", str(node))
        note = f"node {node} (leader of partition 0) SIGKILLed, started {BROKER_DOWN_S:.0f} s later"
        return Window(began, time.monotonic(), note)

    run_fault(fleet, "broker SIGKILL", kill_a_leader)


def test_the_leaders_of_the_jobs_topic_moved(fleet: Fleet) -> None:
    def move_leaders(fleet: Fleet) -> Window:
        topic = job_topic(fleet.model)
        before = leaders(fleet.stack.bootstrap, topic)
        # The same replicas, another first: the preferred leader is then another broker.
        wanted = {}
        for partition, (leader, replicas) in before.items():
            others = [r for r in replicas if r != leader]
            wanted[partition] = [others[0], *[r for r in replicas if r != others[0]]]
        admin = KafkaAdminClient(bootstrap_servers=fleet.stack.bootstrap)
        began = time.monotonic()
        try:
            admin.alter_partition_reassignments(
                {TopicPartition(topic, p): r for p, r in wanted.items()}
            )
            wait_until(
                lambda: all(
                    r == wanted[p] for p, (_, r) in leaders(fleet.stack.bootstrap, topic).items()
                ),
                "the new replica order",
                timeout=60,
            )
            admin.elect_leaders(0, {topic: list(wanted)})
        finally:
            admin.close()
        wait_until(
            lambda: all(
                leader == wanted[p][0]
                for p, (leader, _) in leaders(fleet.stack.bootstrap, topic).items()
            ),
            "every partition led by its new preferred leader",
            timeout=60,
        )
        moves = ", ".join(f"p{p}: {before[p][0]}->{wanted[p][0]}" for p in sorted(wanted))
        return Window(began, time.monotonic(), f"leaders moved ({moves})")

    run_fault(fleet, "leader move", move_leaders)
