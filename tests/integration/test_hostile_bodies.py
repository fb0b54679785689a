"""Hostile bodies and callers over real HTTP and Postgres: a caller without a valid key
costs its headers only, an unknown key costs one database look-up, bodies too deep or
with too many items are refused before they are parsed, and large bodies beyond the
process's slots answer 503.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, event

from api.app import create_app
from inferfleet.settings import Settings
from inferfleet.tenants import keys
from tests.integration.conftest import PublishModel, bearer, eventually, make_key, serve_built
from tests.integration.test_jobs import random_inputs
from tests.integration.test_limits import assert_problem

MAX_DEPTH = 64


def new_tenant() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def api(settings: Settings, engine: Engine, kafka: str, s3: Any) -> Iterator[str]:
    """An API of this test's own (its own unknown-key cache)."""
    yield from serve_built(create_app(settings))


def headers_only(url: str, path: str, extra: dict[str, str], declared: int) -> bytes:
    """Send a request's headers announcing `declared` body bytes, and none of the body;
    return what the server answers (its status line and headers)."""
    host, port = url.removeprefix("http://").split(":")
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}",
        "Content-Type: application/json",
        f"Content-Length: {declared}",
        *(f"{k}: {v}" for k, v in extra.items()),
    ]
    with socket.create_connection((host, int(port)), timeout=15) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer


def test_a_caller_without_a_valid_key_is_answered_before_sending_its_body(
    api: str, engine: Engine
) -> None:
    revoked = make_key(engine, new_tenant(), "jobs")
    with engine.begin() as conn:
        record = keys.authenticate(conn, revoked)
        assert record is not None
        keys.revoke(conn, record.id)

    for path in ("/v1/jobs/bulk", "/v1/jobs", "/v1/batches"):
        for extra in ({}, bearer("ifk_unknown"), bearer(revoked)):
            answer = headers_only(api, path, extra, declared=30 * 1024 * 1024)

            assert answer.startswith(b"HTTP/1.1 401 "), (path, extra, answer[:200])
            assert b"www-authenticate: Bearer" in answer


def test_an_unknown_key_costs_one_database_look_up_and_a_new_key_works_at_once(
    api: str, engine: Engine
) -> None:
    looked_up: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "FROM api_keys" in statement:
            looked_up.append(statement)

    unknown = f"ifk_{uuid.uuid4().hex}"
    event.listen(Engine, "before_cursor_execute", count)
    try:
        answers = [
            httpx.get(f"{api}/v1/jobs", headers=bearer(unknown), timeout=30).status_code
            for _ in range(20)
        ]
        unknown_look_ups = len(looked_up)
        fresh = make_key(engine, new_tenant(), "jobs")
        fresh_answer = httpx.get(f"{api}/v1/jobs", headers=bearer(fresh), timeout=30)
    finally:
        event.remove(Engine, "before_cursor_execute", count)

    assert answers == [401] * 20
    assert unknown_look_ups == 1
    assert fresh_answer.status_code == 200


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"x": value}
    return value


def test_inputs_nested_too_deep_answer_422_naming_them(
    api: str, engine: Engine, publish_model: PublishModel
) -> None:
    model = publish_model()
    inputs = random_inputs(1, 71)[0]
    key = make_key(engine, new_tenant(), "jobs")
    with httpx.Client(base_url=api, headers=bearer(key), timeout=30) as client:
        deep = client.post("/v1/jobs", json={"model": model.name, "inputs": nested(MAX_DEPTH + 1)})
        deepest_allowed = client.post(
            "/v1/jobs", json={"model": model.name, "inputs": nested(MAX_DEPTH)}
        )
        bulk = client.post(
            "/v1/jobs/bulk",
            json={
                "model": model.name,
                "items": [{"inputs": inputs}, {"inputs": {**inputs, "extra": nested(80)}}],
            },
        )
        unparsed = client.post(
            "/v1/jobs",
            content=b'{"model": "m", "inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            headers={"Content-Type": "application/json"},
        )

    problem = assert_problem(deep, 422)
    assert [e["loc"] for e in problem["errors"]] == [["inputs", *["x"] * MAX_DEPTH]]
    assert problem["errors"][0]["type"] == "too_deep"
    assert f"deeper than {MAX_DEPTH} levels" in problem["errors"][0]["msg"]
    allowed = assert_problem(deepest_allowed, 422)  # the schema refuses it, not the depth
    assert all(e["type"] != "too_deep" for e in allowed["errors"])
    bulk_problem = assert_problem(bulk, 422)
    assert [e["loc"][:4] for e in bulk_problem["errors"]] == [["items", 1, "inputs", "extra"]]
    assert bulk_problem["errors"][0]["type"] == "too_deep"
    refused = assert_problem(unparsed, 422)
    assert refused["errors"][0]["loc"] == []
    assert refused["errors"][0]["type"] == "too_deep"
    assert refused["errors"][0]["input"] == 100_001


def test_a_bulk_body_with_too_many_items_is_refused_before_it_is_parsed(
    api: str, engine: Engine, settings: Settings
) -> None:
    key = make_key(engine, new_tenant(), "jobs")
    count = 10 * settings.max_bulk_items
    body = b'{"model": "m", "items": [' + b",".join([b"{}"] * count) + b"]}"

    r = httpx.post(
        f"{api}/v1/jobs/bulk",
        content=body,
        headers={**bearer(key), "Content-Type": "application/json"},
        timeout=30,
    )

    problem = assert_problem(r, 422)
    # One error for the count: the items were never parsed, so none is named alone.
    assert [(e["loc"], e["type"]) for e in problem["errors"]] == [(["items"], "too_long")]
    assert problem["errors"][0]["input"] == count - 1


@pytest.fixture
def one_slot_api(settings: Settings, engine: Engine, kafka: str, s3: Any) -> Iterator[str]:
    """The API reading one body over 1 KiB at a time, waiting 0.2 s for the slot."""
    yield from serve_built(
        create_app(
            settings.model_copy(
                update={"large_body_slots": 1, "large_body_bytes": 1024, "large_body_wait_s": 0.2}
            )
        )
    )


def test_large_bodies_beyond_the_slots_answer_503_and_are_read_once_one_frees(
    one_slot_api: str, engine: Engine
) -> None:
    key = make_key(engine, new_tenant(), "jobs")
    host, port = one_slot_api.removeprefix("http://").split(":")
    large = {"model": f"m-{uuid.uuid4().hex}", "items": [{"inputs": {"pad": "x" * 4096}}]}
    with httpx.Client(base_url=one_slot_api, headers=bearer(key), timeout=30) as client:
        # A slow sender holds the slot: it announces 64 KiB and sends 10 bytes.
        holder = socket.create_connection((host, int(port)), timeout=15)
        request = (
            "POST /v1/jobs/bulk HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: 65536\r\nAuthorization: Bearer {key}\r\n\r\n"
            '{"model": '
        )
        holder.sendall(request.encode())
        small = client.post("/v1/jobs", json={"model": large["model"], "inputs": {"a": 1}})
        refused = client.post("/v1/jobs/bulk", json=large)
        holder.close()
        answers: list[httpx.Response] = []

        def read_once_freed() -> bool:
            answers.append(client.post("/v1/jobs/bulk", json=large))
            return answers[-1].status_code != 503

        eventually(read_once_freed, "the slot to be given back", 30)

    assert small.status_code == 404  # a small body needs no slot
    problem = assert_problem(refused, 503)
    assert refused.headers["retry-after"].isdigit()
    assert "large bodies" in problem["detail"]
    assert answers[-1].status_code == 404  # read and handled: no such model


@pytest.fixture
def few_values_api(settings: Settings, engine: Engine, kafka: str, s3: Any) -> Iterator[str]:
    """The API parsing bodies of at most 1,000 JSON values."""
    yield from serve_built(create_app(settings.model_copy(update={"json_max_values": 1000})))


def test_a_body_of_more_values_than_allowed_is_refused_before_it_is_parsed(
    few_values_api: str, engine: Engine
) -> None:
    """One item of many empty objects: the item count does not bound it, the values do."""
    key = make_key(engine, new_tenant(), "jobs")
    one_item = {"model": "m", "items": [{"inputs": {"pad": [{}] * 2000}}]}
    within = {"model": f"m-{uuid.uuid4().hex}", "items": [{"inputs": {"pad": [{}] * 100}}]}
    with httpx.Client(base_url=few_values_api, headers=bearer(key), timeout=30) as client:
        refused = client.post("/v1/jobs/bulk", json=one_item)
        parsed = client.post("/v1/jobs/bulk", json=within)

    problem = assert_problem(refused, 422)
    assert [(e["loc"], e["type"]) for e in problem["errors"]] == [([], "too_many_values")]
    assert problem["errors"][0]["input"] > 1000
    assert parsed.status_code == 404  # parsed and handled: no such model
