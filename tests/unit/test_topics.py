"""Job topic names, both ways (no services)."""

from __future__ import annotations

import pytest

from inferfleet.clients.topics import dlq_topic, job_topic, parse_job_topic


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        (job_topic("fraud"), ("fraud", "interactive")),
        (job_topic("fraud", "batch"), ("fraud", "batch")),
        (job_topic("all-MiniLM.v2", "batch"), ("all-MiniLM.v2", "batch")),
        (dlq_topic(job_topic("fraud")), None),
        ("inferfleet.jobs.fraud.bulk", None),
        ("inferfleet.jobs.interactive", None),
        ("other.jobs.fraud.interactive", None),
        ("__consumer_offsets", None),
    ],
)
def test_a_job_topic_names_its_model_and_lane(topic: str, expected: object) -> None:
    assert parse_job_topic(topic) == expected
