"""The client's retry decisions (inferfleet_client.retries) and the one flow that applies
them to every request (flows.steps.send), driven here without a network."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from inferfleet_client.errors import ConnectionFailedError, RateLimitError
from inferfleet_client.flows import jobs
from inferfleet_client.flows.steps import Request, Sleep, call, send
from inferfleet_client.models import Job, JobRequest
from inferfleet_client.retries import RetryPolicy, backoff, parse_retry_after, retry_delay

NOW = datetime(2026, 12, 4, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("", None),
        ("3", 3.0),
        (" 2.5 ", 2.5),
        ("-4", 0.0),
        ("soon", None),
        ("nan", None),
        ("Fri, 04 Dec 2026 12:00:30 GMT", 30.0),
        ("Fri, 04 Dec 2026 11:59:00 GMT", 0.0),
    ],
)
def test_retry_after_is_read_as_seconds_or_an_http_date(
    header: str | None, seconds: float | None
) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


POLICY = RetryPolicy(max_retries=3, max_wait_s=10, backoff_s=0.5, max_backoff_s=2)


@pytest.mark.parametrize(
    ("retry", "waited", "retry_after", "delay"),
    [
        (0, 0, 4.0, 4.0),  # the server's word is taken
        (0, 0, None, 0.5),  # else backoff, doubling
        (1, 0.5, None, 1.0),
        (2, 1.5, None, 2.0),
        (3, 3.5, 1.0, None),  # max_retries spent
        (1, 8.0, 3.0, None),  # would pass max_wait_s
        (1, 7.0, 3.0, 3.0),  # exactly max_wait_s is allowed
        (0, 0, 11.0, None),  # a Retry-After beyond the budget ends it at once
    ],
)
def test_retry_delay_honours_retry_after_within_the_policy(
    retry: int, waited: float, retry_after: float | None, delay: float | None
) -> None:
    assert retry_delay(POLICY, retry, waited, retry_after) == delay


def test_backoff_is_capped() -> None:
    assert [backoff(POLICY, n) for n in range(5)] == [0.5, 1.0, 2.0, 2.0, 2.0]


def answer(status: int, body: Any = None, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=body if body is not None else {}, headers=headers)


def problem(status: int, title: str) -> dict[str, Any]:
    return {"type": "t", "title": title, "status": status, "detail": "d", "request_id": "r",
            "errors": []}  # fmt: skip


def drive(flow: Any, answers: list[httpx.Response | Exception]) -> tuple[list[Any], Any]:
    """Run `flow`, answering each Request with the next of `answers`; the steps it took
    and what it returned."""
    steps: list[Any] = []
    value: Any = None
    while True:
        try:
            step = flow.throw(value) if isinstance(value, Exception) else flow.send(value)
        except StopIteration as done:
            return steps, done.value
        steps.append(step)
        value = answers.pop(0) if isinstance(step, Request) else None


REQUEST = Request("GET", "/v1/jobs/j", resend_unanswered=True)


def test_a_503_then_a_200_is_sent_twice_after_retry_after() -> None:
    steps, response = drive(
        send(REQUEST, POLICY),
        [answer(503, problem(503, "Service Unavailable"), **{"Retry-After": "2"}), answer(200)],
    )

    assert steps == [REQUEST, Sleep(2.0), REQUEST]
    assert response.status_code == 200


def test_a_429_past_the_policy_is_raised_with_its_retry_after() -> None:
    limited = answer(429, problem(429, "Too Many Requests"), **{"Retry-After": "1"})
    policy = RetryPolicy(max_retries=1)

    with pytest.raises(RateLimitError) as raised:
        drive(call(REQUEST, policy, Job), [limited, limited])

    assert raised.value.retry_after == 1.0
    assert raised.value.status == 429


@pytest.mark.parametrize("status", [400, 404, 409, 422, 500])
def test_other_statuses_are_not_retried(status: int) -> None:
    steps, response = drive(send(REQUEST, POLICY), [answer(status, problem(status, "x"))])

    assert steps == [REQUEST]
    assert response.status_code == status


def test_a_lost_connection_is_retried_only_when_resending_is_safe() -> None:
    lost = httpx.ConnectError("refused")
    steps, response = drive(send(REQUEST, POLICY), [lost, answer(200)])
    assert steps == [REQUEST, Sleep(0.5), REQUEST]
    assert response.status_code == 200

    unsafe = Request("POST", "/v1/jobs/j/cancel")
    with pytest.raises(ConnectionFailedError, match="POST /v1/jobs/j/cancel"):
        drive(send(unsafe, POLICY), [httpx.ConnectError("refused")])


def test_every_retry_of_a_submit_carries_the_same_idempotency_key() -> None:
    flow = jobs.create(JobRequest(model="fraud", inputs={"a": 1}), POLICY)
    created = {"id": "job_1", "status": "queued", "model": "fraud", "version": "1",
               "created_at": "2026-12-04T12:00:00Z"}  # fmt: skip
    busy = answer(503, problem(503, "Service Unavailable"), **{"Retry-After": "0"})

    steps, job = drive(flow, [busy, httpx.ConnectError("cut"), answer(202, created)])

    sent = [s for s in steps if isinstance(s, Request)]
    assert len(sent) == 3
    keys = {s.headers["Idempotency-Key"] for s in sent}
    assert len(keys) == 1
    assert job.id == "job_1"
    # A second logical submit gets a key of its own.
    again = jobs.create(JobRequest(model="fraud", inputs={"a": 1}), POLICY)
    other = next(again)
    assert isinstance(other, Request)
    assert other.headers["Idempotency-Key"] not in keys


def test_a_replayed_submit_answering_200_with_the_job_gives_the_same_created_shape() -> None:
    job = {"id": "job_1", "status": "succeeded", "model": "fraud", "version": "1",
           "outputs": {"label": 1}, "output_uri": None, "output_url": None, "error": None,
           "attempts": 1, "metadata": {}, "batch_id": None,
           "created_at": "2026-12-04T12:00:00Z", "started_at": None,
           "completed_at": None}  # fmt: skip
    _, created = drive(
        jobs.create(JobRequest(model="fraud", inputs={}), POLICY), [answer(200, job)]
    )

    assert (created.id, created.status, created.version) == ("job_1", "succeeded", "1")
