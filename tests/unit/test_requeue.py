"""worker.requeue: what goes back to Kafka is the record as it was polled (no services)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace

from inferfleet.jobs.messages import JobMessage
from worker.batching import Outcome
from worker.requeue import ERROR_HEADER, put_back, resend


def job(job_id: str) -> JobMessage:
    return JobMessage(
        job_id=job_id,
        tenant="acme",
        model="fraud",
        version=2,
        inputs={"x": 1},
        input_uri=None,
        enqueued_at=datetime(2026, 1, 2, tzinfo=UTC),
        deadline=None,
        request_id=None,
    )


def record(job_id: str, topic: str, value: bytes) -> SimpleNamespace:
    return SimpleNamespace(key=job_id.encode(), topic=topic, value=value, headers=[])


RECORDS = [
    record("a", "inferfleet.jobs.fraud.batch", b"as polled: a"),
    record("b", "inferfleet.jobs.fraud.interactive", b"as polled: b"),
    record("a", "inferfleet.jobs.fraud.batch", b"a later copy of a"),
    SimpleNamespace(
        key=b"\xff\xfe", topic="inferfleet.jobs.fraud.batch", value=b"junk", headers=[]
    ),
]


def test_jobs_waiting_for_their_version_go_back_to_their_topic_as_polled() -> None:
    sent = put_back(RECORDS, [job("a"), job("b")])
    assert [(r.topic, r.key, r.value) for r in sent] == [
        ("inferfleet.jobs.fraud.batch", b"a", b"as polled: a"),
        ("inferfleet.jobs.fraud.interactive", b"b", b"as polled: b"),
    ]


def test_retries_and_dead_letters_carry_the_polled_record_never_a_new_encoding() -> None:
    failed = Outcome("b", error={"type": "invalid_input", "message": "no"}, retriable=False)
    retries, copies = resend(RECORDS, [job("a"), job("b")], [failed], ["a"])
    assert [(r.topic, r.value) for r in retries] == [
        ("inferfleet.jobs.fraud.batch", b"as polled: a")
    ]
    assert [(r.topic, r.value) for r in copies] == [
        ("inferfleet.jobs.fraud.interactive.dlq", b"as polled: b")
    ]
    assert json.loads(dict(copies[0].headers)[ERROR_HEADER])["type"] == "invalid_input"
