"""API keys and tenants over real HTTP: 401, 403, and nobody sees another tenant's job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import httpx
from pydantic import SecretStr
from sqlalchemy import Engine, text

from inferfleet.settings import Settings
from inferfleet.tenants import keys
from tests.integration.conftest import TEST_DATABASE_URL, bearer, eventually, make_key
from tests.integration.served import Statements, served, stop_listening
from tests.integration.test_jobs import random_inputs


def test_a_route_without_a_valid_key_answers_401(api_url: str, admin_key: str) -> None:
    for headers in ({}, {"Authorization": "Bearer ifk_unknown"}, {"Authorization": "Basic x"}):
        r = httpx.get(f"{api_url}/v1/jobs", headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.headers["content-type"] == "application/problem+json"
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert httpx.get(f"{api_url}{path}").status_code == 200, path


def test_a_jobs_key_cannot_use_admin_routes(api_url: str, engine: Engine) -> None:
    key = make_key(engine, f"t-{uuid.uuid4().hex[:8]}", "jobs")
    with httpx.Client(base_url=api_url, headers=bearer(key)) as client:
        assert client.get("/v1/jobs").status_code == 200
        assert client.get("/v1/models").status_code == 403
        assert client.get("/v1/keys").status_code == 403
        assert client.post("/v1/keys", json={"tenant": "x", "scope": "admin"}).status_code == 403


def test_another_tenants_job_is_404_and_absent_from_listings(
    api_url: str, engine: Engine, publish_model
) -> None:
    model = publish_model()
    alice = make_key(engine, f"alice-{uuid.uuid4().hex[:6]}", "jobs")
    bob = make_key(engine, f"bob-{uuid.uuid4().hex[:6]}", "jobs")
    with httpx.Client(base_url=api_url, headers=bearer(alice)) as a:
        job = a.post("/v1/jobs", json={"model": model.name, "inputs": random_inputs(1, 50)[0]})
        assert job.status_code == 202
        job_id = job.json()["id"]
        assert a.get(f"/v1/jobs/{job_id}").status_code == 200
    with httpx.Client(base_url=api_url, headers=bearer(bob)) as b:
        assert b.get(f"/v1/jobs/{job_id}").status_code == 404
        assert b.get("/v1/jobs", params={"model": model.name}).json()["items"] == []
        assert b.post(f"/v1/jobs/{job_id}/cancel").status_code == 404
        assert b.get(f"/v1/jobs/{job_id}/deliveries").status_code == 404
    # An admin key, of any tenant, reads every tenant's objects.
    admin = make_key(engine, f"ops-{uuid.uuid4().hex[:6]}", "admin")
    with httpx.Client(base_url=api_url, headers=bearer(admin)) as o:
        assert o.get(f"/v1/jobs/{job_id}").json()["id"] == job_id
        listed = o.get("/v1/jobs", params={"model": model.name}).json()["items"]
        assert [j["id"] for j in listed] == [job_id]


def test_keys_are_stored_hashed_listed_and_revoked(
    client: httpx.Client, api_url: str, engine: Engine
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    made = client.post("/v1/keys", json={"tenant": tenant, "scope": "jobs"})
    assert made.status_code == 201
    body = made.json()
    assert body["webhook_secret"].startswith("whsec_")
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT key_hash FROM api_keys WHERE id = :id"), {"id": body["id"]}
        ).scalar_one()
    assert body["key"] not in stored
    listed = {k["id"]: k for k in client.get("/v1/keys").json()["items"]}
    assert "key" not in listed[body["id"]]

    assert httpx.get(f"{api_url}/v1/jobs", headers=bearer(body["key"])).status_code == 200
    assert client.delete(f"/v1/keys/{body['id']}").json()["revoked_at"] is not None
    assert httpx.get(f"{api_url}/v1/jobs", headers=bearer(body["key"])).status_code == 401
    assert client.delete("/v1/keys/key_nope").status_code == 404
    bad = client.post("/v1/keys", json={"tenant": "Bad Name", "scope": "jobs"})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["loc"] == ["tenant"]


def test_the_cli_prints_exactly_the_documented_object(settings: Settings, engine: Engine) -> None:
    env = {**os.environ, "INFERFLEET_DATABASE_URL": TEST_DATABASE_URL}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "inferfleet.cli",
            "keys",
            "create",
            "--tenant",
            "cli-t",
            "--scope",
            "jobs",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    printed = json.loads(result.stdout)
    assert set(printed) == {"key", "tenant", "scope", "webhook_secret"}
    assert (printed["tenant"], printed["scope"]) == ("cli-t", "jobs")
    assert result.stdout.count("\n") == 1


def test_a_known_key_is_answered_without_asking_postgres_again(
    settings: Settings, engine: Engine
) -> None:
    key = make_key(engine, f"t-{uuid.uuid4().hex[:8]}", "jobs")
    with served(settings, cache_max_age_s=3600) as (app, url):
        statements = Statements(app)
        answers = [httpx.get(f"{url}/v1/jobs", headers=bearer(key)).status_code for _ in range(5)]
        looked_up = statements.reading("api_keys")

    assert answers == [200] * 5
    assert len(looked_up) == 1, looked_up


def test_a_key_revoked_by_another_process_stops_working_through_its_notification(
    settings: Settings, engine: Engine
) -> None:
    key = make_key(engine, f"t-{uuid.uuid4().hex[:8]}", "jobs")
    # Entries would live an hour: only the notification can end this key's entry.
    with served(settings, cache_max_age_s=3600) as (_, url):
        assert httpx.get(f"{url}/v1/jobs", headers=bearer(key)).status_code == 200
        revoke(engine, key)
        eventually(
            lambda: httpx.get(f"{url}/v1/jobs", headers=bearer(key)).status_code == 401,
            "the revoked key to be refused",
            30,
        )


def test_a_revoked_key_stops_working_within_the_max_age_without_notifications(
    settings: Settings, engine: Engine
) -> None:
    key = make_key(engine, f"t-{uuid.uuid4().hex[:8]}", "jobs")
    with served(settings, cache_max_age_s=1) as (app, url):
        stop_listening(app)
        assert httpx.get(f"{url}/v1/jobs", headers=bearer(key)).status_code == 200
        revoke(engine, key)
        eventually(
            lambda: httpx.get(f"{url}/v1/jobs", headers=bearer(key)).status_code == 401,
            "the revoked key to age out",
            30,
        )


def revoke(engine: Engine, key: str) -> None:
    """Revoke `key` as the CLI or another API process would: in the database directly."""
    with engine.begin() as conn:
        record = keys.authenticate(conn, key)
        assert record is not None
        keys.revoke(conn, record.id)


def test_a_key_not_remembered_answers_503_while_postgres_is_down(
    settings: Settings, engine: Engine
) -> None:
    key = make_key(engine, f"t-{uuid.uuid4().hex[:8]}", "jobs")
    # Port 1 on loopback: nothing listens, every connection is refused at once.
    down = SecretStr("postgresql+psycopg://inferfleet:inferfleet@127.0.0.1:1/inferfleet_test")
    with served(settings, database_url=down) as (_, url):
        answer = httpx.get(f"{url}/v1/jobs/job_x", headers=bearer(key), timeout=30)

    assert answer.status_code == 503
    assert answer.headers["retry-after"] == str(settings.retry_after_s)
    assert answer.headers["content-type"] == "application/problem+json"
