"""inferfleet.jobs.messages: the version-1 job message on the queue."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from inferfleet.jobs.messages import JobMessage, UndecodableMessageError, decode, encode

ENQUEUED = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def message(**changes: Any) -> JobMessage:
    fields: dict[str, Any] = {
        "job_id": "job_01JABCDEF",
        "tenant": "default",
        "model": "fraud",
        "version": 3,
        "inputs": {"transaction_amount": 12.5, "merchant_category": "grocery"},
        "input_uri": None,
        "enqueued_at": ENQUEUED,
        "deadline": None,
        "request_id": "req_123",
    }
    return JobMessage(**{**fields, **changes})


def body(**changes: Any) -> dict[str, Any]:
    """A valid v1 message as a dict, with `changes` applied."""
    fields: dict[str, Any] = {
        "v": 1,
        "job_id": "job_01JABCDEF",
        "tenant": "default",
        "model": "fraud",
        "version": "3",
        "inputs": {"x": 1},
        "enqueued_at": ENQUEUED.isoformat(),
        "deadline": None,
        "request_id": None,
    }
    fields.update(changes)
    return fields


@pytest.mark.parametrize(
    "msg",
    [
        pytest.param(message(), id="inputs"),
        pytest.param(
            message(inputs=None, input_uri="s3://inferfleet/inputs/job.json"), id="input-uri"
        ),
        pytest.param(message(deadline=ENQUEUED + timedelta(seconds=30)), id="deadline-utc"),
        pytest.param(
            message(deadline=datetime(2026, 1, 2, 5, 0, tzinfo=timezone(timedelta(hours=2)))),
            id="deadline-offset",
        ),
        pytest.param(message(request_id=None), id="no-request-id"),
    ],
)
def test_decode_reads_back_what_encode_wrote(msg: JobMessage) -> None:
    assert decode(encode(msg)) == msg


def test_encode_writes_the_documented_fields() -> None:
    value = json.loads(encode(message(deadline=ENQUEUED + timedelta(minutes=1))))

    assert value == {
        "v": 1,
        "job_id": "job_01JABCDEF",
        "tenant": "default",
        "model": "fraud",
        "version": "3",
        "inputs": {"transaction_amount": 12.5, "merchant_category": "grocery"},
        "enqueued_at": "2026-01-02T03:04:05.678901+00:00",
        "deadline": "2026-01-02T03:05:05.678901+00:00",
        "request_id": "req_123",
    }


def test_encode_writes_input_uri_instead_of_inputs() -> None:
    value = json.loads(encode(message(inputs=None, input_uri="s3://b/k.json")))

    assert value["input_uri"] == "s3://b/k.json"
    assert "inputs" not in value


def test_decode_accepts_a_numeric_version() -> None:
    assert decode(json.dumps(body(version=3)).encode()).version == 3


def without(key: str) -> dict[str, Any]:
    value = body()
    del value[key]
    return value


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(None, id="tombstone"),
        pytest.param(b"", id="empty"),
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
        pytest.param(b"[1, 2]", id="json-array"),
        pytest.param(b'"a string"', id="json-string"),
        pytest.param(json.dumps(body(v=2)).encode(), id="v-2"),
        pytest.param(json.dumps(without("v")).encode(), id="v-missing"),
        pytest.param(
            json.dumps(body(input_uri="s3://b/k.json")).encode(), id="inputs-and-input-uri"
        ),
        pytest.param(json.dumps(body(inputs=None)).encode(), id="neither-inputs-nor-uri"),
        pytest.param(json.dumps(without("job_id")).encode(), id="job-id-missing"),
        pytest.param(json.dumps(without("tenant")).encode(), id="tenant-missing"),
        pytest.param(json.dumps(without("version")).encode(), id="version-missing"),
        pytest.param(json.dumps(body(version="three")).encode(), id="version-not-a-number"),
        pytest.param(json.dumps(body(version=None)).encode(), id="version-null"),
        pytest.param(json.dumps(without("enqueued_at")).encode(), id="enqueued-at-missing"),
        pytest.param(json.dumps(body(enqueued_at="yesterday")).encode(), id="enqueued-at-bad"),
        pytest.param(json.dumps(body(deadline="soon")).encode(), id="deadline-bad"),
        pytest.param(json.dumps(body(job_id=None)).encode(), id="job-id-null"),
        pytest.param(json.dumps(body(version=1.5)).encode(), id="version-fractional"),
    ],
)
def test_decode_refuses_what_is_not_a_v1_job_message(value: bytes | None) -> None:
    with pytest.raises(UndecodableMessageError):
        decode(value)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (body(inputs=None), "exactly one of inputs and input_uri"),
        (body(v=2), "unknown message version 2"),
        (without("job_id"), "job_id must be a non-empty string, got None"),
        (body(version="three"), "version must be a version number, got 'three'"),
    ],
)
def test_undecodable_message_error_says_why(value: dict[str, Any], reason: str) -> None:
    with pytest.raises(UndecodableMessageError, match=re.escape(reason)):
        decode(json.dumps(value).encode())
