"""The client's request and response models held against the live `/openapi.json` of a
served API: the same fields, the same types (nested models, enums and date-times
included), the same required fields; and every route the client calls exists, submits
with an `Idempotency-Key`. A change on either side that the other lacks fails here."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from inferfleet_client import models as client

pytestmark = pytest.mark.integration

# The client's models and the server's schemas they stand for.
REQUESTS: dict[type[BaseModel], str] = {
    client.JobRequest: "JobSubmit",
    client.Webhook: "Webhook",
    client.BulkItem: "BulkItem",
    client.BulkRequest: "BulkSubmit",
    client.BatchWebhook: "BatchWebhook",
    client.BatchRequest: "BatchSubmit",
    client.UploadRequest: "UploadCreate",
}
RESPONSES: dict[type[BaseModel], str] = {
    client.JobCreated: "JobCreated",
    client.BulkCreated: "BulkCreated",
    client.JobError: "JobError",
    client.Job: "JobView",
    client.JobPage: "JobList",
    client.Delivery: "DeliveryView",
    client.DeliveryList: "DeliveryList",
    client.BatchCreated: "BatchCreated",
    client.BatchCounts: "BatchCounts",
    client.InvalidLine: "InvalidLine",
    client.Batch: "BatchView",
    client.BatchPage: "BatchList",
    client.Upload: "UploadCreated",
    client.ModelSummary: "ModelSummary",
    client.ModelList: "ModelList",
    client.ModelFile: "ModelFile",
    client.ModelVersion: "ModelVersionView",
    client.Model: "ModelView",
    client.ProblemFieldError: "ProblemFieldError",
}
CLIENT_NAME = {server: model.__name__ for model, server in (REQUESTS | RESPONSES).items()}
# (method, path) of every API route the client calls; True where it sends Idempotency-Key.
ROUTES = {
    ("post", "/v1/jobs"): True,
    ("post", "/v1/jobs/bulk"): True,
    ("get", "/v1/jobs"): False,
    ("get", "/v1/jobs/{job_id}"): False,
    ("get", "/v1/jobs/{job_id}/events"): False,
    ("post", "/v1/jobs/{job_id}/cancel"): False,
    ("get", "/v1/jobs/{job_id}/deliveries"): False,
    ("post", "/v1/uploads"): False,
    ("post", "/v1/batches"): True,
    ("get", "/v1/batches"): False,
    ("get", "/v1/batches/{batch_id}"): False,
    ("get", "/v1/batches/{batch_id}/events"): False,
    ("post", "/v1/batches/{batch_id}/cancel"): False,
    ("get", "/v1/models"): False,
    ("get", "/v1/models/{name}"): False,
}


@pytest.fixture(scope="module")
def openapi(api_url: str) -> dict[str, Any]:
    answer = httpx.get(f"{api_url}/openapi.json", timeout=30)
    assert answer.status_code == 200
    document: dict[str, Any] = answer.json()
    return document


def shape(schema: dict[str, Any], rename: dict[str, str]) -> Any:
    """What a JSON schema says of a value's type, in a form both sides share: references
    by the client's model names, enums as their values, date-times apart from strings;
    lengths, patterns and descriptions left out (the server checks those)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return ("ref", rename.get(name, name))
    if "anyOf" in schema:
        return ("anyOf", frozenset(shape(s, rename) for s in schema["anyOf"]))
    if "enum" in schema:
        return ("enum", frozenset(schema["enum"]))
    kind = schema.get("type")
    if kind == "string":
        return "date-time" if schema.get("format") == "date-time" else "string"
    if kind == "array":
        return ("array", shape(schema.get("items", {}), rename))
    if kind == "object":
        extra = schema.get("additionalProperties", True)
        return ("object", "any" if extra in (True, {}) else shape(extra, rename))
    return kind or "any"


def fields(schema: dict[str, Any], rename: dict[str, str]) -> dict[str, Any]:
    return {name: shape(s, rename) for name, s in schema.get("properties", {}).items()}


def client_schemas() -> dict[str, dict[str, Any]]:
    _, document = models_json_schema(
        [(m, "validation") for m in REQUESTS | RESPONSES],
        ref_template="#/components/schemas/{model}",
    )
    found: dict[str, dict[str, Any]] = document["$defs"]
    return found


@pytest.mark.parametrize(
    ("model", "server_name"), list((REQUESTS | RESPONSES).items()), ids=lambda v: str(v)
)
def test_each_client_model_matches_the_server_schema(
    openapi: dict[str, Any], model: type[BaseModel], server_name: str
) -> None:
    server = openapi["components"]["schemas"][server_name]
    mine = client_schemas()[model.__name__]

    assert fields(mine, {}) == fields(server, CLIENT_NAME)
    required_here = set(mine.get("required", []))
    required_there = set(server.get("required", []))
    if model in REQUESTS:
        assert required_here == required_there  # the client sends what the server needs
    else:
        assert required_here <= required_there  # the client needs only what is always sent


def test_every_route_the_client_calls_exists_and_submits_take_an_idempotency_key(
    openapi: dict[str, Any],
) -> None:
    for (method, path), keyed in ROUTES.items():
        operation = openapi["paths"].get(path, {}).get(method)
        assert operation is not None, f"{method.upper()} {path} is not in the API"
        headers = {
            p["name"].lower() for p in operation.get("parameters", []) if p["in"] == "header"
        }
        assert ("idempotency-key" in headers) is keyed, f"{method.upper()} {path}"
