"""The OpenAPI document: keys, errors and request ids documented on every operation.

Creating the app connects to nothing (that happens in its lifespan), so the document is
built here without services.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.requests import Request

from api.app import create_app
from api.plumbing.problems import PROBLEM, Problem, ProblemError, problem_response
from inferfleet.errors import FieldError
from inferfleet.settings import load_settings

DOCUMENT: dict[str, Any] = create_app(load_settings()).openapi()
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


def operations(prefix: str = "/") -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{method.upper()} {path}", operation)
        for path, item in DOCUMENT["paths"].items()
        if path.startswith(prefix)
        for method, operation in item.items()
    ]


V1 = operations("/v1/")


def test_the_api_describes_itself() -> None:
    info = DOCUMENT["info"]
    assert info["title"] == "inferfleet"
    assert info["version"] == "1"
    assert "X-Request-ID" in info["description"]
    assert len(V1) >= 12


def test_the_bearer_scheme_is_declared() -> None:
    schemes = DOCUMENT["components"]["securitySchemes"]
    assert list(schemes.values()) == [
        {"type": "http", "scheme": "bearer", "description": "an API key"}
    ]


@pytest.mark.parametrize(("label", "operation"), V1, ids=[label for label, _ in V1])
def test_each_v1_operation_needs_the_key_and_documents_its_errors(
    label: str, operation: dict[str, Any]
) -> None:
    scheme = next(iter(DOCUMENT["components"]["securitySchemes"]))
    assert operation["security"] == [{scheme: []}]
    headers = [p["name"].lower() for p in operation.get("parameters", []) if p["in"] == "header"]
    assert "authorization" not in headers, "the key is documented by the security scheme"
    answers = operation["responses"]
    required = {"401", "422", "429", "503"}
    if "requestBody" in operation:
        required |= {"413"}
    assert required <= answers.keys()
    for status, answer in answers.items():
        if int(status) >= 400:
            assert answer["content"] == {PROBLEM: {"schema": PROBLEM_REF}}, status


@pytest.mark.parametrize(
    ("label", "operation"), operations(), ids=[label for label, _ in operations()]
)
def test_every_answer_documents_its_request_id(label: str, operation: dict[str, Any]) -> None:
    for status, answer in operation["responses"].items():
        header = answer["headers"]["X-Request-ID"]
        assert header["required"] is True, status
        assert header["schema"] == {"type": "string"}


def test_validation_errors_are_documented_as_problems_only() -> None:
    assert "HTTPValidationError" not in DOCUMENT["components"]["schemas"]


def test_waits_are_documented_on_429_and_503() -> None:
    for _, operation in V1:
        for status in ("429", "503"):
            assert operation["responses"][status]["headers"]["Retry-After"]["required"] is True


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/jobs/bulk", "/v1/batches"])
def test_the_idempotency_key_header_is_documented(path: str) -> None:
    operation = DOCUMENT["paths"][path]["post"]
    (parameter,) = [p for p in operation["parameters"] if p["name"].lower() == "idempotency-key"]
    assert parameter["in"] == "header"
    assert parameter["required"] is False
    assert "409" in parameter["description"]
    assert {"200", "202", "409"} <= set(operation["responses"])


def test_job_submit_documents_exactly_one_input() -> None:
    schema = DOCUMENT["components"]["schemas"]["JobSubmit"]
    assert [option["required"] for option in schema["oneOf"]] == [["inputs"], ["input_uri"]]


def test_the_problem_schema_lists_every_rfc_9457_member() -> None:
    schema = DOCUMENT["components"]["schemas"]["Problem"]
    assert set(schema["required"]) == {"type", "title", "status", "detail", "request_id", "errors"}
    assert schema["additionalProperties"] is True, "extension members such as job_status"
    item = DOCUMENT["components"]["schemas"]["ProblemFieldError"]
    assert set(item["required"]) == {"loc", "msg", "type", "input"}


def test_a_rendered_problem_fits_the_documented_model() -> None:
    request = Request({"type": "http", "state": {"request_id": "req_1"}})
    problem = ProblemError(
        409,
        "Conflict",
        "job job_1 is running",
        errors=[FieldError(("inputs", "hour_of_day"), "too big", "less_than_equal", 99)],
        job_status="running",
    )
    response = problem_response(request, problem)
    assert response.media_type == PROBLEM
    parsed = Problem.model_validate(json.loads(bytes(response.body)))
    assert parsed.request_id == "req_1"
    assert parsed.errors[0].loc == ["inputs", "hour_of_day"]
    assert parsed.model_extra == {"job_status": "running"}
