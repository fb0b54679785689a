"""worker.payloads: S3 inputs read back per job, large outputs moved to S3 (fakes, no services)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

import worker.payloads
from inferfleet.errors import NotFoundError
from inferfleet.jobs.messages import JobMessage
from inferfleet.settings import load_settings
from worker.batching import Outcome, settle
from worker.main import TRANSIENT
from worker.payloads import Payloads, parse_input

SCHEMA = {
    "type": "object",
    "properties": {"x": {"type": "number", "maximum": 10}},
    "required": ["x"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b'{"x": 3}', {"x": 3}),
        (b'{"x": 3.5}  \n', {"x": 3.5}),
        (b"not json", "s3://b/k is not JSON: "),
        (b"\xff\xfe", "s3://b/k is not JSON: "),
        (b"", "s3://b/k is not JSON: "),
        (b"[1, 2]", "s3://b/k holds a JSON list, not an object"),
        (b"null", "s3://b/k holds a JSON NoneType, not an object"),
        (b'{"x": 11}', "s3://b/k breaks the request schema: x: 11 is greater than the maximum"),
        (b"{}", "s3://b/k breaks the request schema: x: 'x' is a required property"),
        (b'{"x": NaN}', "s3://b/k breaks the request schema: x: must be a finite number"),
    ],
)
def test_parse_input(data: bytes, expected: dict[str, Any] | str) -> None:
    parsed = parse_input("s3://b/k", data, SCHEMA)
    if isinstance(expected, str):
        assert isinstance(parsed, str)
        assert parsed.startswith(expected)
    else:
        assert parsed == expected


def job(job_id: str, inputs: dict[str, Any] | None = None, uri: str | None = None) -> JobMessage:
    return JobMessage(
        job_id=job_id,
        tenant="acme",
        model="fraud",
        version=1 if job_id != "unknown-version" else 99,
        inputs=inputs,
        input_uri=uri,
        enqueued_at=datetime(2026, 1, 2, tzinfo=UTC),
        deadline=None,
        request_id=None,
    )


def client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "GetObject")


@dataclass
class FakeS3:
    """The object store calls payloads makes: get_object and put_object."""

    objects: dict[str, bytes] = field(default_factory=dict)
    errors: dict[str, Exception] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    reads: list[str] = field(default_factory=list)

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803 - boto3's names
        uri = f"s3://{Bucket}/{Key}"
        self.reads.append(uri)
        if uri in self.errors:
            raise self.errors[uri]
        if uri not in self.objects:
            raise client_error("NoSuchKey")
        data = self.objects[uri]
        return {"Body": io.BytesIO(data), "ContentLength": len(data)}

    def put_object(self, Bucket: str, Key: str, Body: bytes, ContentType: str) -> None:  # noqa: N803
        self.events.append(f"put s3://{Bucket}/{Key}")
        self.objects[f"s3://{Bucket}/{Key}"] = Body


@dataclass
class FakeEngine:
    """Records the statements payloads runs."""

    events: list[str]
    executed: list[dict[str, Any]] = field(default_factory=list)

    @contextmanager
    def connect(self) -> Iterator[FakeEngine]:
        yield self

    begin = connect

    def execute(self, statement: Any, params: dict[str, Any]) -> None:
        self.events.append("database write")
        self.executed.append(params)


@pytest.fixture
def s3() -> FakeS3:
    return FakeS3()


@pytest.fixture
def engine(s3: FakeS3) -> FakeEngine:
    return FakeEngine(s3.events)


@pytest.fixture
def payloads(s3: FakeS3, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch) -> Payloads:
    def get_version(conn: Any, name: str, version: int) -> Any:
        if version != 1:
            raise NotFoundError(f"{name} has no version {version}")
        return SimpleNamespace(request_schema=SCHEMA)

    monkeypatch.setattr(worker.payloads.registry, "get_version", get_version)
    # These tests are about reading objects; tenancy has its own test below.
    monkeypatch.setattr(worker.payloads, "job_input_uri", lambda uri, *_: uri)
    settings = load_settings(output_inline_bytes=40)
    return Payloads(settings, engine, s3)  # type: ignore[arg-type]


def test_each_unusable_object_fails_its_job_alone_and_at_once(
    payloads: Payloads, s3: FakeS3
) -> None:
    s3.objects = {
        "s3://b/good.json": b'{"x": 1}',
        "s3://b/text.json": b"hello",
        "s3://b/list.json": b"[]",
        "s3://b/invalid.json": b'{"x": 99}',
    }
    s3.errors["s3://b/denied.json"] = client_error("AccessDenied")
    jobs = [
        job("inline", inputs={"x": 2}),
        job("good", uri="s3://b/good.json"),
        job("missing", uri="s3://b/missing.json"),
        job("text", uri="s3://b/text.json"),
        job("list", uri="s3://b/list.json"),
        job("invalid", uri="s3://b/invalid.json"),
        job("denied", uri="s3://b/denied.json"),
        job("unknown-version", uri="s3://b/good.json"),
    ]

    ready, failed = payloads.fetch_inputs(jobs)

    assert [(j.job_id, j.inputs) for j in ready] == [("inline", {"x": 2}), ("good", {"x": 1})]
    assert ready[1].input_uri == "s3://b/good.json", "a resent message keeps the reference"
    errors = {o.job_id: o.error["type"] for o in failed if o.error is not None}
    assert errors == {
        "missing": "input_unavailable",
        "text": "invalid_input",
        "list": "invalid_input",
        "invalid": "invalid_input",
        "denied": "input_unavailable",
        "unknown-version": "model_unavailable",
    }
    assert all("s3://b/" in o.error["message"] for o in failed if o.job_id != "unknown-version")
    # Final on the first attempt: settle retries none of them.
    final, retry = settle(failed, {o.job_id: 1 for o in failed}, max_attempts=3)
    assert (len(final), retry) == (len(failed), [])


def test_jobs_without_input_uri_pass_through_untouched(payloads: Payloads) -> None:
    jobs = [job("a", inputs={"x": 1}), job("b", inputs={"x": 2})]
    assert payloads.fetch_inputs(jobs) == (jobs, [])


@pytest.mark.parametrize(
    "outage",
    [
        client_error("InternalError"),
        client_error("SlowDown"),
        EndpointConnectionError(endpoint_url="http://127.0.0.1:5000"),
    ],
    ids=["5xx", "throttled", "unreachable"],
)
def test_an_object_store_outage_fails_the_batch_for_a_retry(
    payloads: Payloads, s3: FakeS3, outage: Exception
) -> None:
    s3.objects["s3://b/good.json"] = b'{"x": 1}'
    s3.errors["s3://b/away.json"] = outage
    jobs = [job("good", uri="s3://b/good.json"), job("away", uri="s3://b/away.json")]
    with pytest.raises(TRANSIENT):
        payloads.fetch_inputs(jobs)


def test_large_outputs_go_to_s3_and_their_outcome_names_the_object(
    payloads: Payloads, s3: FakeS3, engine: FakeEngine
) -> None:
    large = {"label": 1, "probabilities": [0.125, 0.875], "note": "x" * 20}
    outcomes = [
        Outcome("small", outputs={"label": 0}),
        Outcome("large", outputs=large),
        Outcome("failed", error={"type": "inference_error", "message": "boom"}),
        Outcome("nan", outputs={"score": float("nan"), "pad": "y" * 40}),
    ]
    jobs = [job(o.job_id, inputs={"x": 1}) for o in outcomes]

    stored = payloads.store_outputs(outcomes, jobs)

    uri = "s3://inferfleet/results/acme/large.json"
    assert stored == [outcomes[0], Outcome("large", output_uri=uri), outcomes[2], outcomes[3]]
    assert json.loads(s3.objects[uri]) == large
    assert s3.events == [f"put {uri}"]
    assert engine.executed == []  # the results transaction stores output_uri


def test_small_outputs_touch_neither_s3_nor_the_database(payloads: Payloads, s3: FakeS3) -> None:
    outcomes = [Outcome("a", outputs={"label": 0})]
    assert payloads.store_outputs(outcomes, [job("a", inputs={"x": 1})]) == outcomes
    assert s3.events == []


def test_a_uri_outside_the_tenants_prefixes_is_never_read(s3: FakeS3, engine: FakeEngine) -> None:
    settings = load_settings()  # the default prefixes: s3://inferfleet/tenants/<tenant>/
    mine = "s3://inferfleet/tenants/acme/in.json"
    theirs = "s3://inferfleet/tenants/other/in.json"
    claims = "s3://inferfleet/claims"
    for uri in (mine, theirs, f"{claims}/own.json", f"{claims}/someone-elses.json"):
        s3.objects[uri] = b'{"x": 1}'
    payloads = Payloads(settings, engine, s3)  # type: ignore[arg-type]
    payloads._schemas[("fraud", 1)] = SCHEMA
    jobs = [
        job("mine", uri=mine),
        job("own", uri=f"{claims}/own.json"),  # its own claim check
        job("theirs", uri=theirs),
        job("climbs", uri="s3://inferfleet/tenants/acme/../other/in.json"),
        job("encoded", uri="s3://inferfleet/tenants/acme/%2e%2e/other/in.json"),
        job("borrowed", uri=f"{claims}/someone-elses.json"),
    ]

    ready, failed = payloads.fetch_inputs(jobs)

    assert [j.job_id for j in ready] == ["mine", "own"]
    assert {o.job_id: o.error["type"] for o in failed if o.error} == {
        "theirs": "forbidden_input",
        "climbs": "forbidden_input",
        "encoded": "forbidden_input",
        "borrowed": "forbidden_input",
    }
    for o in failed:
        assert o.error is not None
        assert "'acme'" in o.error["message"]
        assert not o.retriable
    assert s3.reads == [mine, f"{claims}/own.json"], "a forbidden object is never read"
