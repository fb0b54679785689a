"""Schedules on the real stack: the admin API, and firings by real beat processes.

Two scheduler processes (`python -m scheduler worker -B`, each with its own beat and
its own schedule file, ticking every 0.5 s on a Redis database of this module's own)
evaluate every schedule at once, so a firing is raced for on every tick. Tests craft a
schedule's `created_at` or `last_fired_for` so that a run is due at once rather than
waiting for a wall-clock minute, and assert on the `batches` rows the firings insert
(ingesting them is batch ingest's job, not the scheduler's).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from inferfleet.batches.schedules import (
    get_schedule,
    insert_firing,
    latest_run,
    make_cron,
    next_runs,
)
from inferfleet.cli import main as cli_main
from inferfleet.settings import Settings
from scheduler.firing import fire_due
from tests.integration.conftest import (
    TEST_DATABASE_URL,
    SchedulerProcess,
    bearer,
    eventually,
    make_key,
    start_scheduler,
)

pytestmark = pytest.mark.integration

REDIS_URL = "redis://127.0.0.1:6379/6"
TICK_S = 0.5
BUCKET = "inferfleet"
TICK_DONE = "Task inferfleet.fire_schedules["


@dataclass
class Scheduler(SchedulerProcess):
    """One `python -m scheduler worker -B` process and its log."""

    def ticks(self) -> int:
        """How many schedule ticks this process has finished."""
        if self.proc.poll() is not None:
            pytest.fail(f"scheduler exited with {self.proc.returncode}:\n{self.log()}")
        return sum(TICK_DONE in line and "succeeded" in line for line in self.log().splitlines())


def start_beat(folder: Path, name: str) -> Scheduler:
    env = {
        "INFERFLEET_REDIS_URL": REDIS_URL,
        "INFERFLEET_SCHEDULE_TICK_S": str(TICK_S),
        # These processes are here for schedules; other tests' webhooks are not theirs.
        "INFERFLEET_DISPATCH_INTERVAL_S": "3600",
    }
    started = start_scheduler(
        folder,
        name,
        env,
        concurrency=1,
        args=(
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--hostname",
            f"{name}@%h",
        ),
    )
    return Scheduler(started.log_path, started.proc)


@pytest.fixture(scope="module")
def schedulers(
    tmp_path_factory: pytest.TempPathFactory, engine: Engine
) -> Iterator[list[Scheduler]]:
    """Two scheduler processes with beat, both ticking; yields them once both have ticked."""
    folder = tmp_path_factory.mktemp("schedulers")
    pair = [start_beat(folder, "beat-a"), start_beat(folder, "beat-b")]
    try:
        eventually(lambda: all(s.ticks() > 0 for s in pair), "both schedulers to tick", 120)
        yield pair
    finally:
        for s in pair:
            s.stop()


def wait_ticks(pair: list[Scheduler], n: int) -> None:
    """Wait until each process has finished `n` more ticks than now."""
    start = [s.ticks() for s in pair]
    eventually(
        lambda: all(s.ticks() >= b + n for s, b in zip(pair, start, strict=True)),
        f"{n} more ticks of each scheduler",
        120,
    )


@pytest.fixture
def tenant(engine: Engine) -> str:
    name = f"sched-{uuid.uuid4().hex[:8]}"
    make_key(engine, name, "jobs")
    return name


@pytest.fixture
def new_schedule(
    client: httpx.Client, engine: Engine, tenant: str, publish_model: Callable[..., Any]
) -> Iterator[Callable[..., dict[str, Any]]]:
    """Create schedules of this test's own tenant and model over the API; deleted after."""
    model = publish_model().name
    made: list[str] = []

    def _new(**fields: Any) -> dict[str, Any]:
        name = f"s-{uuid.uuid4().hex[:10]}"
        body = {
            "name": name,
            "cron": "0 3 * * *",
            "timezone": "UTC",
            "tenant": tenant,
            "model": model,
            "version": "production",
            "input_uri": f"s3://{BUCKET}/tenants/{tenant}/in/{{date}}/rows.jsonl",
            "output_prefix": f"s3://{BUCKET}/tenants/{tenant}/out/",
            "webhook": None,
            **fields,
        }
        r = client.post("/v1/schedules", json=body)
        assert r.status_code == 201, r.text
        made.append(name)
        created: dict[str, Any] = r.json()
        return created

    yield _new
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM schedules WHERE name = ANY(:n)"), {"n": made})


def batch_rows(engine: Engine, schedule: str) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                text("SELECT * FROM batches WHERE schedule_name = :s ORDER BY scheduled_for"),
                {"s": schedule},
            )
        )


def set_schedule(engine: Engine, name: str, **values: Any) -> None:
    sets = ", ".join(f"{k} = :{k}" for k in values)
    with engine.begin() as conn:
        conn.execute(
            text(f"UPDATE schedules SET {sets} WHERE name = :name"), {**values, "name": name}
        )


def last_fired_for(engine: Engine, name: str) -> datetime | None:
    with engine.connect() as conn:
        schedule = get_schedule(conn, name)
    assert schedule is not None
    return schedule.last_fired_for


def test_create_get_list_trigger_delete(
    client: httpx.Client, engine: Engine, tenant: str, new_schedule: Callable[..., dict[str, Any]]
) -> None:
    hook = {"url": "https://example.com/hooks", "events": ["batch.completed"]}
    made = new_schedule(cron="30 2 * * *", timezone="Europe/Berlin", webhook=hook)
    name = made["name"]
    rule = make_cron("30 2 * * *", "Europe/Berlin")
    assert made["timezone"] == "Europe/Berlin"
    assert made["catch_up"] is True
    assert made["last_fired_for"] is None
    assert made["webhook"] == hook
    assert made["output_prefix"] == f"s3://{BUCKET}/tenants/{tenant}/out/"
    next_run = datetime.fromisoformat(made["next_run_at"])
    assert next_run == next_runs(rule, datetime.now(UTC) - timedelta(minutes=1), 1)[0]

    got = client.get(f"/v1/schedules/{name}")
    assert got.status_code == 200
    assert got.json() == made
    listed = client.get("/v1/schedules").json()["items"]
    assert [s for s in listed if s["name"] == name] == [made]

    before = datetime.now(UTC).replace(microsecond=0)
    fired = client.post(f"/v1/schedules/{name}/trigger")
    assert fired.status_code == 202, fired.text
    batch = fired.json()
    assert batch["id"].startswith("bat_")
    assert batch["status"] == "validating"
    assert fired.headers["location"] == f"/v1/batches/{batch['id']}"
    scheduled_for = datetime.fromisoformat(batch["scheduled_for"])
    assert before <= scheduled_for <= datetime.now(UTC)
    assert scheduled_for.microsecond == 0

    (row,) = batch_rows(engine, name)
    assert row.id == batch["id"]
    assert (row.tenant, row.model, row.version) == (tenant, made["model"], "production")
    assert row.scheduled_for == scheduled_for
    date = scheduled_for.astimezone(rule.tz).date().isoformat()
    assert row.input_uri == f"s3://{BUCKET}/tenants/{tenant}/in/{date}/rows.jsonl"
    stamp = scheduled_for.strftime("%Y%m%dT%H%M%SZ")
    assert row.output_prefix == f"s3://{BUCKET}/tenants/{tenant}/out/{name}/{stamp}/"
    assert row.webhook == hook
    assert batch["input_uri"] == row.input_uri
    assert batch["output_prefix"] == row.output_prefix
    # A manual run is outside the cron's sequence: the cron's next run is unchanged.
    assert client.get(f"/v1/schedules/{name}").json()["last_fired_for"] is None

    gone = client.delete(f"/v1/schedules/{name}")
    assert gone.status_code == 200
    assert gone.json()["name"] == name
    assert client.get(f"/v1/schedules/{name}").status_code == 404
    assert client.delete(f"/v1/schedules/{name}").status_code == 404
    assert client.post(f"/v1/schedules/{name}/trigger").status_code == 404
    assert [r.id for r in batch_rows(engine, name)] == [batch["id"]]  # its batches stay


def test_triggers_within_one_second_make_one_batch(
    client: httpx.Client, engine: Engine, new_schedule: Callable[..., dict[str, Any]]
) -> None:
    name = new_schedule()["name"]
    answers = [client.post(f"/v1/schedules/{name}/trigger").json() for _ in range(5)]
    rows = batch_rows(engine, name)
    # Five triggers span at most a few seconds: one batch per second, each answered.
    assert len(rows) == len({a["scheduled_for"] for a in answers})
    assert {r.id for r in rows} == {a["id"] for a in answers}


def test_invalid_schedules_name_every_bad_field_and_value(
    client: httpx.Client, tenant: str, new_schedule: Callable[..., dict[str, Any]]
) -> None:
    good = new_schedule()
    body = {
        **{k: good[k] for k in ("tenant", "model", "input_uri", "output_prefix")},
        "name": f"s-{uuid.uuid4().hex[:10]}",
        "cron": "0 25 * * *",
        "timezone": "Europe/Nowhere",
        "version": "no-such-alias",
        "input_uri": f"s3://{BUCKET}/tenants/{tenant}/in/{{hour}}.jsonl",
        "webhook": {"url": "http://127.0.0.1:9/hook"},
    }
    r = client.post("/v1/schedules", json=body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    errors = {tuple(e["loc"]): e["input"] for e in r.json()["errors"]}
    assert errors == {
        ("timezone",): "Europe/Nowhere",
        ("cron",): "0 25 * * *",
        ("input_uri",): body["input_uri"],
        ("webhook", "url"): "http://127.0.0.1:9/hook",
        ("version",): "no-such-alias",
    }

    unknown = {**body, "cron": "0 2 * * *", "timezone": "UTC", "version": "production"}
    unknown.update(input_uri=good["input_uri"], webhook=None, model="no-such-model")
    unknown["tenant"] = "no-such-tenant"
    unknown["input_uri"] = f"s3://{BUCKET}/tenants/no-such-tenant/in.jsonl"
    unknown["output_prefix"] = f"s3://{BUCKET}/tenants/no-such-tenant/out/"
    r = client.post("/v1/schedules", json=unknown)
    assert r.status_code == 422, r.text
    assert {tuple(e["loc"]): e["input"] for e in r.json()["errors"]} == {
        ("tenant",): "no-such-tenant",
        ("model",): "no-such-model",
    }

    r = client.post("/v1/schedules", json={**body, "name": "Not A Name"})
    assert r.status_code == 422
    assert [e["loc"] for e in r.json()["errors"]] == [["name"]]

    # S3 URIs outside the tenant's prefixes are 403 (API.md), naming the field and value.
    elsewhere = f"s3://{BUCKET}/tenants/someone-else/out/"
    r = client.post("/v1/schedules", json={**body, "output_prefix": elsewhere})
    assert r.status_code == 403, r.text
    assert [(e["loc"], e["input"]) for e in r.json()["errors"]] == [(["output_prefix"], elsewhere)]

    fields = ("name", "cron", "timezone", "tenant", "model", "version", "input_uri")
    again = client.post(
        "/v1/schedules", json={**{k: good[k] for k in fields}, "output_prefix": "s3://x/y/"}
    )
    assert again.status_code == 403  # the URIs are checked before the name is taken
    again = client.post(
        "/v1/schedules", json={k: good[k] for k in (*fields, "output_prefix", "catch_up")}
    )
    assert again.status_code == 409, again.text
    assert good["name"] in again.json()["detail"]


def test_schedules_are_admin_only(api_url: str, engine: Engine, tenant: str) -> None:
    key = make_key(engine, tenant, "jobs")
    with httpx.Client(base_url=api_url, headers=bearer(key)) as c:
        assert c.get("/v1/schedules").status_code == 403
        assert c.post("/v1/schedules", json={}).status_code == 403
        assert c.post("/v1/schedules/x/trigger").status_code == 403
        assert c.delete("/v1/schedules/x").status_code == 403


def test_a_firing_raced_by_two_transactions_makes_one_batch(
    engine: Engine, settings: Settings, new_schedule: Callable[..., dict[str, Any]]
) -> None:
    """The database, not the scheduler's care, makes a firing once: both racers read the
    schedule before either inserts."""
    name = new_schedule()["name"]
    with engine.connect() as conn:
        schedule = get_schedule(conn, name)
    assert schedule is not None
    at = datetime(2026, 11, 25, 2, tzinfo=UTC)
    barrier = threading.Barrier(2)
    made: list[str | None] = []

    def race() -> None:
        with engine.begin() as conn:
            barrier.wait()
            made.append(insert_firing(conn, schedule, at))

    threads = [threading.Thread(target=race) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(m is None for m in made) == [False, True], made
    (row,) = batch_rows(engine, name)
    assert row.id in made


def due_now_cron(now: datetime, ago: timedelta) -> tuple[str, datetime]:
    """A daily UTC cron whose latest run was `ago` before `now`, and that run."""
    run = (now - ago).replace(second=0, microsecond=0)
    return f"{run.minute} {run.hour} * * *", run


def test_two_beat_processes_firing_the_same_schedule_create_one_batch(
    schedulers: list[Scheduler], engine: Engine, new_schedule: Callable[..., dict[str, Any]]
) -> None:
    cron, run = due_now_cron(datetime.now(UTC), timedelta(minutes=1))
    name = new_schedule(cron=cron)["name"]
    # Made just now, the schedule has nothing due; made yesterday, today's run is due.
    set_schedule(engine, name, created_at=run - timedelta(days=1))

    eventually(lambda: batch_rows(engine, name), "the schedule's batch", 120)
    wait_ticks(schedulers, 5)
    assert [r.scheduled_for for r in batch_rows(engine, name)] == [run]
    assert last_fired_for(engine, name) == run
    fired = [s.log().count(f"schedule {name} fired for") for s in schedulers]
    assert sum(fired) == 1, fired


def test_a_missed_firing_runs_once(
    schedulers: list[Scheduler], engine: Engine, new_schedule: Callable[..., dict[str, Any]]
) -> None:
    now = datetime.now(UTC)
    cron, _ = due_now_cron(now, timedelta(hours=3))
    name = new_schedule(cron=cron)["name"]
    latest = latest_run(make_cron(cron, "UTC"), now)
    # The scheduler was "down" for five days: five runs of the daily cron were missed.
    set_schedule(engine, name, last_fired_for=latest - timedelta(days=5))

    eventually(lambda: batch_rows(engine, name), "the caught-up batch", 120)
    wait_ticks(schedulers, 5)
    rows = batch_rows(engine, name)
    assert [r.scheduled_for for r in rows] == [latest]
    assert rows[0].input_uri.endswith(f"/in/{latest.date().isoformat()}/rows.jsonl")
    assert last_fired_for(engine, name) == latest
    logs = "".join(s.log() for s in schedulers)
    assert logs.count(f"schedule {name} fired for") == 1
    assert "caught up once" in logs


def test_a_missed_firing_is_skipped_without_catch_up(
    schedulers: list[Scheduler], engine: Engine, new_schedule: Callable[..., dict[str, Any]]
) -> None:
    now = datetime.now(UTC)
    cron, _ = due_now_cron(now, timedelta(hours=3))
    name = new_schedule(cron=cron, catch_up=False)["name"]
    latest = latest_run(make_cron(cron, "UTC"), now)
    set_schedule(engine, name, last_fired_for=latest - timedelta(days=5))

    eventually(lambda: last_fired_for(engine, name) == latest, "the missed run to be skipped", 120)
    wait_ticks(schedulers, 3)
    assert batch_rows(engine, name) == []


def test_a_tick_in_process_fires_what_is_due_once(
    engine: Engine, settings: Settings, new_schedule: Callable[..., dict[str, Any]]
) -> None:
    """`fire_due` run twice at the same instant, as two beat ticks would."""
    now = datetime.now(UTC)
    cron, run = due_now_cron(now, timedelta(minutes=2))
    name = new_schedule(cron=cron)["name"]
    set_schedule(engine, name, created_at=run - timedelta(days=1))
    fire_due(engine, settings, now)
    fire_due(engine, settings, now)
    assert [r.scheduled_for for r in batch_rows(engine, name)] == [run]
    assert last_fired_for(engine, name) == run
    # A tick that reads a stale schedule (as if the first firing were not recorded yet)
    # finds the batch there: the constraint, not the schedule row, keeps it one.
    set_schedule(engine, name, last_fired_for=None)
    fire_due(engine, settings, now)
    assert [r.scheduled_for for r in batch_rows(engine, name)] == [run]
    assert last_fired_for(engine, name) == run


def test_cli_lists_schedules_and_their_next_runs(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    new_schedule: Callable[..., dict[str, Any]],
) -> None:
    made = new_schedule(cron="30 2 * * *", timezone="Europe/Berlin")
    monkeypatch.setenv("INFERFLEET_DATABASE_URL", TEST_DATABASE_URL)
    assert cli_main(["schedules", "list", "--next", "2"]) == 0
    (line,) = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(made["name"])]
    rule = make_cron("30 2 * * *", "Europe/Berlin")
    upcoming = [t.astimezone(rule.tz).isoformat() for t in next_runs(rule, datetime.now(UTC), 2)]
    assert line.split("\t") == [
        made["name"],
        "30 2 * * *",
        "Europe/Berlin",
        made["tenant"],
        f"{made['model']}:production",
        "catch-up",
        f"next: {', '.join(upcoming)}",
    ]
