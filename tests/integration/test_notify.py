"""inferfleet.clients.notify on the real Postgres: what the triggers send, and a listener
that comes back after its connection is cut."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import psycopg
from sqlalchemy import Engine, text

from inferfleet.clients.notify import JOBS_ENDED, KEYS, MODELS, Listener, libpq_url
from inferfleet.settings import Settings
from inferfleet.tables import jobs
from inferfleet.tenants import keys

MARKER = "end-of-test"


def insert_queued(engine: Engine, count: int) -> list[str]:
    """`count` queued jobs of a model of this test's own; their ids."""
    model = f"notify-{uuid.uuid4().hex[:8]}"
    ids = [f"job_{model}_{n}" for n in range(count)]
    rows: list[dict[str, Any]] = [
        {
            "id": i,
            "tenant": "t-notify",
            "model": model,
            "version": 1,
            "status": "queued",
            "lane": "interactive",
            "inputs": {},
        }
        for i in ids
    ]
    with engine.begin() as conn:
        conn.execute(jobs.insert(), rows)
    return ids


def heard(settings: Settings, engine: Engine, channel: str, writes: list[list[str]]) -> int:
    """How many notifications `channel` carried for `writes` (each a transaction of
    statements, run one after the other): everything up to a marker sent last."""
    url = libpq_url(settings.database_url.get_secret_value())
    with psycopg.connect(url, autocommit=True) as listening:
        listening.execute(f'LISTEN "{channel}"')
        for transaction in writes:
            with engine.begin() as conn:
                for statement in transaction:
                    conn.execute(text(statement))
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_notify(:c, :m)"), {"c": channel, "m": MARKER})
        for count, notice in enumerate(listening.notifies(timeout=30)):
            if notice.payload == MARKER:
                return count
    raise AssertionError("the marker notification never came")


def test_a_transaction_ending_jobs_in_several_statements_sends_one_notification(
    settings: Settings, engine: Engine
) -> None:
    a, b, c = insert_queued(engine, 3)
    ending = [
        f"UPDATE jobs SET status = 'succeeded' WHERE id = '{a}'",
        f"UPDATE jobs SET status = 'failed' WHERE id = '{b}'",
        f"UPDATE jobs SET status = 'cancelled' WHERE id = '{c}'",
    ]

    assert heard(settings, engine, JOBS_ENDED, [ending]) == 1


def test_claims_and_other_updates_of_unended_jobs_send_nothing(
    settings: Settings, engine: Engine
) -> None:
    ids = insert_queued(engine, 3)
    listed = ", ".join(f"'{i}'" for i in ids)
    claims = [
        [f"UPDATE jobs SET status = 'running', attempts = attempts + 1 WHERE id IN ({listed})"],
        [f"UPDATE jobs SET produced_at = now() WHERE id IN ({listed})"],
    ]

    assert heard(settings, engine, JOBS_ENDED, claims) == 0


def test_each_change_of_keys_or_the_registry_is_announced_once_per_transaction(
    settings: Settings, engine: Engine
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        made = keys.create_key(conn, tenant, "jobs")
    revoke = f"UPDATE api_keys SET revoked_at = now() WHERE id = '{made.record.id}'"
    name = f"notify-{uuid.uuid4().hex[:8]}"
    # Statement-level triggers: a statement that matched no row announces too (harmless).
    unalias = f"DELETE FROM model_aliases WHERE name = '{name}'"
    unversion = f"DELETE FROM model_versions WHERE name = '{name}'"

    assert heard(settings, engine, KEYS, [[revoke, revoke], [revoke]]) == 2
    assert heard(settings, engine, MODELS, [[unalias, unversion, unalias]]) == 1


def test_the_listener_comes_back_after_its_connection_is_cut_and_says_so(
    settings: Settings, engine: Engine
) -> None:
    name = f"inferfleet-test-{uuid.uuid4().hex[:8]}"

    async def main() -> tuple[int, int]:
        connects: list[int] = []
        ended = asyncio.Event()
        listener = Listener(
            settings.database_url.get_secret_value(),
            {JOBS_ENDED: ended.set},
            on_connect=lambda: connects.append(1),
            application_name=name,
        )
        task = asyncio.create_task(listener.run())
        try:
            await asyncio.wait_for(listener.wait_connected(), 30)
            await asyncio.to_thread(cut, engine, name)
            while len(connects) < 2:
                await asyncio.sleep(0.05)
            await asyncio.wait_for(listener.wait_connected(), 30)
            ended.clear()
            (job,) = await asyncio.to_thread(insert_queued, engine, 1)
            await asyncio.to_thread(end, engine, job)
            await asyncio.wait_for(ended.wait(), 30)
            return len(connects), listener.connects
        finally:
            task.cancel()

    assert asyncio.run(main()) == (2, 2)


def cut(engine: Engine, application_name: str) -> None:
    """End the backend of the test's own listener, as a Postgres restart would."""
    with engine.begin() as conn:
        cut = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = :n"
            ),
            {"n": application_name},
        ).scalar_one()
    assert cut == 1


def end(engine: Engine, job_id: str) -> None:
    with engine.begin() as conn:
        conn.execute(jobs.update().where(jobs.c.id == job_id).values(status="succeeded"))
