"""Problem documents (RFC 9457) become one typed exception per status, with every member."""

from __future__ import annotations

from typing import Any

import pytest

from inferfleet_client import errors
from inferfleet_client.errors import problem_error


def problem(status: int, **extra: Any) -> dict[str, Any]:
    return {"type": f"https://inferfleet.dev/problems/{status}", "title": "T", "status": status,
            "detail": "why", "request_id": "req-1", "errors": [], **extra}  # fmt: skip


@pytest.mark.parametrize(
    ("status", "cls", "retriable"),
    [
        (400, errors.BadRequestError, False),
        (401, errors.AuthenticationError, False),
        (403, errors.PermissionDeniedError, False),
        (404, errors.NotFoundError, False),
        (409, errors.ConflictError, False),
        (413, errors.PayloadTooLargeError, False),
        (422, errors.UnprocessableError, False),
        (429, errors.RateLimitError, True),
        (503, errors.ServiceUnavailableError, True),
        (500, errors.ServerError, True),
        (502, errors.ServerError, True),
        (418, errors.APIError, False),
    ],
)
def test_each_status_has_its_exception(status: int, cls: type, retriable: bool) -> None:
    raised = problem_error(status, problem(status))

    assert type(raised) is cls
    assert isinstance(raised, errors.APIError)
    assert isinstance(raised, errors.InferfleetError)
    assert raised.retriable is retriable
    assert (raised.status, raised.title, raised.detail, raised.request_id) == (
        status, "T", "why", "req-1",
    )  # fmt: skip
    assert raised.type == f"https://inferfleet.dev/problems/{status}"
    assert "why" in str(raised)
    assert "req-1" in str(raised)


def test_a_422_carries_every_offending_field() -> None:
    body = problem(422, errors=[
        {"loc": ["items", 50, "inputs", "hour_of_day"], "msg": "too big", "type": "le",
         "input": 99},
        {"loc": ["model"], "msg": "required", "type": "missing", "input": None},
    ])  # fmt: skip

    raised = problem_error(422, body)

    assert isinstance(raised, errors.UnprocessableError)
    assert [(e.loc, e.msg, e.type, e.input) for e in raised.errors] == [
        (["items", 50, "inputs", "hour_of_day"], "too big", "le", 99),
        (["model"], "required", "missing", None),
    ]


def test_extension_members_are_kept_and_a_409_names_the_job_status() -> None:
    raised = problem_error(409, problem(409, job_status="running", other=[1]))

    assert isinstance(raised, errors.ConflictError)
    assert raised.job_status == "running"
    assert raised.batch_status is None
    assert raised.extensions == {"job_status": "running", "other": [1]}


def test_an_answer_that_is_no_problem_document_still_raises_by_status() -> None:
    raised = problem_error(502, "<html>Bad Gateway</html>", request_id="from-header")

    assert isinstance(raised, errors.ServerError)
    assert raised.request_id == "from-header"
    assert "Bad Gateway" in raised.detail


def test_retry_after_travels_with_the_error() -> None:
    raised = problem_error(503, problem(503), retry_after=5.0)

    assert isinstance(raised, errors.ServiceUnavailableError)
    assert raised.retry_after == 5.0
