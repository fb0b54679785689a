"""The plans of the important statements on day-partitioned `jobs` with enough rows
that the planner's choice is real: default planner settings, statistics from ANALYZE.

`ROWS` jobs over `DAYS` day partitions (most finished, a few queued, `TENANTS` tenants)
are written by COPY into a database of the module's own, with a queued batch to claim
and a running batch to finish. Each statement is run under EXPLAIN ANALYZE as the
services run it (their own statement objects, bound parameters) in a transaction rolled
back after, so the plan shows which partitions it reached (run-time pruning included):

- get by ID (`api.plumbing.store.get_job`): one partition, by an index on the ID;
- the claim of a batch of one day's IDs (`worker.persist.CLAIM`): that day's partition
  only, each row by its primary key;
- the result write (`worker.persist.FINISH`, after the COPY of its rows): no partition
  with rows read whole;
- a tenant's page of jobs after a cursor (`api.plumbing.store.list_jobs`): the
  (`tenant`, `id`) index read backwards from the cursor, in the newest partition only.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, text
from ulid import ULID

from api.plumbing.store import _job, list_jobs
from inferfleet.jobs.partitions import spans
from tests.integration.scratchdb import scratch_database
from worker.batching import Outcome
from worker.persist import CLAIM, FINISH, _stage

ROWS = 300_000
DAYS = 5
TENANTS = 50
BATCH = 2000
CLAIMED, RUNNING = 3, 1  # the days of the batch to claim and of the batch running


@dataclass(frozen=True)
class Filled:
    engine: Engine
    ids_by_day: dict[str, list[str]]  # partition name -> its IDs, oldest first


def copy_jobs(engine: Engine, rows: list[tuple[str, ...]]) -> None:
    buffer = io.StringIO()
    for row in rows:
        buffer.write("\t".join(row) + "\n")
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        columns = "id, tenant, model, version, status, lane, outputs, created_at, completed_at"
        with cursor.copy(f"COPY jobs ({columns}) FROM STDIN") as copy:  # type: ignore[attr-defined]
            copy.write(buffer.getvalue())
        raw.commit()
    finally:
        raw.close()


@pytest.fixture(scope="module")
def filled() -> Iterator[Filled]:
    with scratch_database() as (engine, _):
        with engine.connect() as conn:
            days = [s for s in spans(conn) if s.start is not None][:DAYS]
        chance = random.Random(17)
        ids_by_day: dict[str, list[str]] = {}
        rows = []
        outputs = json.dumps({"label": 0, "probabilities": [0.9, 0.1]})
        for day in days:
            assert day.start is not None
            made = []
            for n in range(ROWS // DAYS):
                at = day.start + timedelta(milliseconds=n * 86_400_000 // (ROWS // DAYS))
                job_id = f"job_{str(ULID.from_datetime(at)).lower()}"
                made.append(job_id)
                queued = chance.random() < 0.01
                stamp = at.isoformat()
                rows.append(
                    (
                        job_id,
                        f"tenant-{chance.randrange(TENANTS)}",
                        "fraud",
                        "1",
                        "queued" if queued else "succeeded",
                        "interactive",
                        "\\N" if queued else outputs,
                        stamp,
                        "\\N" if queued else stamp,
                    )
                )
            ids_by_day[day.name("jobs")] = made
        copy_jobs(engine, rows)
        names = sorted(ids_by_day)
        with engine.begin() as conn:  # a backlog to claim, and a batch being run
            conn.execute(
                text("UPDATE jobs SET status = 'queued', outputs = NULL WHERE id = ANY(:ids)"),
                {"ids": ids_by_day[names[CLAIMED]][:BATCH]},
            )
            conn.execute(
                text("UPDATE jobs SET status = 'running', claim_token = 't' WHERE id = ANY(:ids)"),
                {"ids": ids_by_day[names[RUNNING]][:BATCH]},
            )
            conn.execute(text("ANALYZE jobs"))
        yield Filled(engine, ids_by_day)


@dataclass(frozen=True)
class Scan:
    kind: str  # the plan node's type
    partition: str
    index: str | None  # the index of `jobs` whose partition it reads (`jobs_pkey`, …)
    loops: int  # how often it ran (0: pruned at run time)


PARENT_INDEX = text(
    """
    SELECT c.relname, p.relname FROM pg_inherits AS i
      JOIN pg_class AS c ON c.oid = i.inhrelid JOIN pg_class AS p ON p.oid = i.inhparent
     WHERE p.relkind = 'I'
    """
)


def executed(
    engine: Engine,
    statement: Any,
    params: dict[str, Any] | None = None,
    prepare: Callable[[Connection], None] | None = None,
) -> list[Scan]:
    """The scans of `jobs` partitions in the plan of `statement`, run with `params` bound
    as the services bind them (after `prepare`, in the same transaction), in a
    transaction rolled back after."""
    compiled = statement.compile(dialect=engine.dialect)
    bound = dict(compiled.params) | (params or {})
    with engine.connect() as conn:
        if prepare is not None:
            prepare(conn)
        found = conn.exec_driver_sql(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + str(compiled), bound
        ).scalar_one()
        conn.rollback()
        parents = {row[0]: row[1] for row in conn.execute(PARENT_INDEX)}
    return [
        Scan(
            n["Node Type"],
            n["Relation Name"],
            parents.get(n.get("Index Name", "")),
            n["Actual Loops"],
        )
        for n in nodes(found[0]["Plan"])
        if str(n.get("Relation Name", "")).startswith("jobs_")
    ]


def nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from nodes(child)


def nonempty(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(
            conn.execute(
                text("SELECT relname FROM pg_class WHERE relname LIKE 'jobs\\_%' AND reltuples > 0")
            ).scalars()
        )


INDEXED = {"Index Scan", "Index Only Scan", "Bitmap Heap Scan"}


def test_get_by_id_reads_one_partition_by_an_index_on_the_id(filled: Filled) -> None:
    day, ids = sorted(filled.ids_by_day.items())[2]
    found = executed(filled.engine, _job("tenant-1", ids[len(ids) // 2]))
    # The (tenant, id) index answers as well as the primary key: both hold the ID.
    assert [(s.kind, s.partition) for s in found] == [("Index Scan", day)]
    assert found[0].index in {"jobs_pkey", "jobs_tenant_id"}


def test_the_claim_of_a_batch_reads_only_its_day_through_indexes(filled: Filled) -> None:
    day, ids = sorted(filled.ids_by_day.items())[CLAIMED]
    found = executed(filled.engine, CLAIM, {"ids": ids[:BATCH], "token": "t"})
    ran = [s for s in found if s.loops]
    assert {s.partition for s in ran} == {day}, found
    assert {s.kind for s in ran if s.kind != "Bitmap Index Scan"} <= INDEXED, ran
    # The update finds each claimed row by its primary key, in its day only.
    assert (day, "jobs_pkey", BATCH) in {(s.partition, s.index, s.loops) for s in ran}


def test_the_result_write_reads_no_partition_whole(filled: Filled) -> None:
    day, ids = sorted(filled.ids_by_day.items())[RUNNING]
    outcomes = [Outcome(i, outputs={"label": 1}) for i in ids[:BATCH]]
    params = {"ids": ids[:BATCH], "token": "t"}
    # The results go in by COPY first, as `persist.finish` writes them.
    found = executed(filled.engine, FINISH, params, lambda conn: _stage(conn, outcomes))
    big = nonempty(filled.engine)
    assert day in {s.partition for s in found if s.loops}
    assert [s for s in found if s.partition in big and s.kind not in INDEXED] == []


def test_a_tenants_page_after_a_cursor_walks_the_tenant_index_backwards(
    filled: Filled,
) -> None:
    day, ids = sorted(filled.ids_by_day.items())[4]
    captured: list[Any] = []

    class Capture:
        def execute(self, statement: Any) -> list[Any]:
            captured.append(statement)
            return []

    list_jobs(Capture(), "tenant-7", limit=50, cursor=ids[len(ids) // 2])  # type: ignore[arg-type]
    found = executed(filled.engine, captured[0])
    ran = [s for s in found if s.loops]
    assert [(s.kind, s.partition) for s in ran] == [("Index Scan", day)], found
    assert {s.index for s in found} == {"jobs_tenant_id"}, found
