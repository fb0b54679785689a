"""The whole OpenAPI document, fuzzed by schemathesis against the API on real HTTP.

Every operation gets generated requests, valid and invalid, sent with an admin key of a
tenant of this module's own to the API served over the real stack. schemathesis' default
checks then hold every answer to the document: no 5xx; a documented status code,
content type, headers (`X-Request-ID` on every answer) and body schema; invalid
requests refused, valid ones not refused as invalid, and the /v1 routes refusing
requests without the key or with a wrong one.

What is not sent as generated, and why:

- `POST /v1/models/{name}/versions` and `PUT /v1/models/{name}/aliases/{alias}` change
  the registry every test of the session shares, so they run against a model name of
  this module's own that is never published: moving an alias of it, or registering a
  version from a generated package URI, can touch no model another test uses. Their
  422s for schema-valid bodies are expected: whether a package exists in S3 and passes
  the publish checks, or an alias is a number, no schema can say.
- `GET /v1/jobs` answers 422 for schema-valid queries that name jobs (`id`) and page
  too (`status`, `model`, `batch_id`, `cursor`), or `wait` without `id`: OpenAPI cannot
  say that query parameters exclude each other (`test_waiters.py` checks those 422s).
- `DELETE /v1/keys/{key_id}` is excluded: revoking keys is the one destructive route
  whose target a fuzzer could reach (a key id from `POST /v1/keys`); revoking and its
  404 are covered in `test_auth.py`.
- NUL characters: Postgres cannot store them in text, so every request carrying one is
  a 422 (`test_nul_characters_are_refused_not_500`); generating them everywhere would
  only find that answer again.

The run is bounded and reproducible: a fixed seed, `MAX_EXAMPLES` per operation (plus
schemathesis' example and coverage cases), no example database.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import settings
from sqlalchemy import Engine

from api.app import create_app
from inferfleet.settings import load_settings
from tests.integration.conftest import bearer, make_key

Case = schemathesis.Case[Any]
SEED = 20240917
MAX_EXAMPLES = 25
MUTATING_MODEL_ROUTES = {
    ("POST", "/v1/models/{name}/versions"),
    ("PUT", "/v1/models/{name}/aliases/{alias}"),
}

# Built in-process (creating the app connects to nothing) so that pytest collects one
# test per operation; `test_the_fuzzed_document_is_the_served_one` ties it to the server.
DOCUMENT = create_app(load_settings()).openapi()
CONFIG = {
    "seed": SEED,
    "generation": {"mode": "all", "deterministic": True, "allow-x00": False},
    "operations": [
        {
            # GET /v1/jobs/bulk reaches GET /v1/jobs/{job_id} (for a job "bulk"), so a 405
            # there rightly allows GET too, which the document lists under the template.
            "include-path": "/v1/jobs/bulk",
            "checks": {"allow_header_conformance": {"enabled": False}},
        },
        {
            "include-path": "/v1/jobs",
            "include-method": "GET",
            "checks": {
                "positive_data_acceptance": {
                    "expected-statuses": ["2xx", 401, 403, 404, 409, 422, 429]
                }
            },
        },
        {
            "include-path-regex": "^/v1/models/[^/]+/(versions|aliases/.*)$",
            "checks": {
                "positive_data_acceptance": {
                    "expected-statuses": ["2xx", 401, 403, 404, 409, 422, 429]
                }
            },
        },
    ],
}
schema = schemathesis.openapi.from_dict(
    DOCUMENT, config=schemathesis.Config.from_dict(CONFIG)
).exclude(method="DELETE", path="/v1/keys/{key_id}")


@schema.auth()
class FuzzKey:
    """The bearer key on every case, except those schemathesis sends without one on
    purpose (its negative tests of the security scheme)."""

    key = ""  # set by the `fuzz_key` fixture before any case is generated

    def get(self, case: Case, ctx: schemathesis.AuthContext) -> str:
        return self.key

    def set(self, case: Case, data: str, ctx: schemathesis.AuthContext) -> None:
        case.headers.update(bearer(data))


@pytest.fixture(scope="module")
def fuzz_key(engine: Engine) -> str:
    """An admin key of a tenant of this module's own."""
    FuzzKey.key = make_key(engine, f"fuzz-{uuid.uuid4().hex[:10]}", "admin")
    return FuzzKey.key


@pytest.fixture(scope="module")
def unpublished_model() -> str:
    """A model name nobody publishes: the mutating model routes aim only at it."""
    return f"fuzz-{uuid.uuid4().hex[:12]}"


def test_the_fuzzed_document_is_the_served_one(api_url: str) -> None:
    assert httpx.get(f"{api_url}/openapi.json").json() == DOCUMENT


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None)
def test_every_answer_is_documented_and_below_500(
    case: Case, api_url: str, fuzz_key: str, unpublished_model: str
) -> None:
    if (case.operation.method.upper(), case.operation.path) in MUTATING_MODEL_ROUTES:
        case.path_parameters = {**(case.path_parameters or {}), "name": unpublished_model}
    case.call_and_validate(base_url=api_url)


# Regressions the fuzzer found: each answered 500.


def test_nul_characters_are_refused_not_500(client: httpx.Client) -> None:
    """Postgres text cannot hold NUL: such a value is the request's fault, a 422."""
    for r in (
        client.get("/v1/jobs", params={"cursor": "job_\x00"}),
        client.get("/v1/jobs/job_%00x"),
        client.post("/v1/keys", json={"tenant": "t\x00", "scope": "jobs"}),
        client.post("/v1/jobs", json={"model": "m\x00", "inputs": {}}),
    ):
        assert r.status_code in (404, 422), r.text
        assert r.headers["content-type"] == "application/problem+json"
    refused = client.get("/v1/jobs", params={"model": "fraud\x00"})
    assert refused.status_code == 422
    assert "cannot be stored" in refused.json()["detail"]


def test_a_body_that_is_not_json_is_a_problem_not_500(client: httpx.Client) -> None:
    """A body sent as text/plain reaches validation as bytes; its 422 still renders."""
    r = client.post(
        "/v1/jobs/bulk", content=b'{"model": "m"}', headers={"Content-Type": "text/plain"}
    )
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"][0]["input"] == '{"model": "m"}'


def test_an_s3_uri_s3_cannot_address_is_a_422_naming_it(
    client: httpx.Client, unpublished_model: str
) -> None:
    uri = "s3://not a bucket!/package/"
    r = client.post(f"/v1/models/{unpublished_model}/versions", json={"package_uri": uri})
    assert r.status_code == 422, r.text
    (error,) = r.json()["errors"]
    assert (error["loc"], error["input"]) == (["package_uri"], uri)


def test_a_version_of_unicode_digits_is_an_alias_not_500(client: httpx.Client) -> None:
    """`"³".isdigit()` holds, but `int("³")` fails: only ASCII digits name a version."""
    for path, body in (
        ("/v1/jobs", {"inputs": {}}),
        ("/v1/jobs/bulk", {"items": [{"inputs": {}}]}),
    ):
        r = client.post(path, json={"model": f"t-{uuid.uuid4().hex[:10]}", "version": "³", **body})
        assert r.status_code == 404, r.text


def test_405_allows_every_method_of_the_path(client: httpx.Client) -> None:
    """Starlette names only the first route's methods; `/v1/jobs` has GET and POST."""
    r = client.request("DELETE", "/v1/jobs")
    assert r.status_code == 405
    assert {"GET", "POST"} <= set(r.headers["allow"].split(", "))
