"""Batch leases against the real Postgres, S3 and Kafka: a heartbeat keeps a batch from
a second taker however long a step takes, and a holder whose token was taken over
writes nothing more.

Each step is made long by the test itself: the S3 client handed to the ingest or the
results writer is the real one, one of whose calls (the Parquet download, the upload of
a resubmission's input or of the results, a claim-check write) waits for the test's go.
Leases are two seconds long, so a lease that nothing renewed would run out while the
test waits for the database clock to pass it.
"""

from __future__ import annotations

import io
import json
import os
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import Engine, text

from inferfleet.clients.objectstore import split_uri
from inferfleet.ids import batch_job_id, new_batch_id
from inferfleet.settings import Settings
from inferfleet.tables import batches, jobs
from scheduler.batchresults import results_uri
from scheduler.ingest import VALIDATING, ingest_next
from scheduler.lease import LeaseLostError, take
from scheduler.results import complete
from tests.integration.conftest import eventually
from tests.integration.test_batches import rows

pytestmark = pytest.mark.integration

LEASE_S = 2.0
# Older than any batch a test makes through the API, so an ingest takes it first.
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)
LINES = 40


class HeldS3:
    """The real S3 client, whose calls of `method` wait until the test says go."""

    def __init__(self, s3: Any, method: str) -> None:
        self._s3 = s3
        self._method = method
        self.entered = threading.Event()
        self.go = threading.Event()

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._s3, name)
        if name != self._method:
            return real

        def held(*args: Any, **kwargs: Any) -> Any:
            self.entered.set()
            assert self.go.wait(timeout=60), "the test never let the step go on"
            return real(*args, **kwargs)

        return held


class InThread:
    """`call()` run in a thread; `result` joins it and returns or raises what it did."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self._outcome: list[Any] = []
        self._error: list[BaseException] = []

        def run() -> None:
            try:
                self._outcome.append(call())
            except BaseException as e:  # noqa: BLE001 - handed to the test by result()
                self._error.append(e)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def result(self) -> Any:
        self._thread.join(timeout=60)
        assert not self._thread.is_alive(), "the holder did not end"
        if self._error:
            raise self._error[0]
        return self._outcome[0]


@pytest.fixture
def short(settings: Settings) -> Settings:
    return settings.model_copy(update={"batch_lease_s": LEASE_S})


@pytest.fixture
def made(engine: Engine) -> Iterator[list[str]]:
    """IDs of the batches a test made; they and their jobs are deleted afterwards."""
    ids: list[str] = []
    yield ids
    with engine.begin() as conn:
        conn.execute(jobs.delete().where(jobs.c.batch_id.in_(ids)))
        conn.execute(batches.delete().where(batches.c.id.in_(ids)))


def lease_of(engine: Engine, batch_id: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT lease_owner, lease_until, lease_until > now() AS held, status, total,"
                " version, output_uri FROM batches WHERE id = :id"
            ),
            {"id": batch_id},
        ).one()


def run_out(engine: Engine, batch_id: str) -> Any:
    """Wait until the database clock passes the batch's lease as it stands now: had
    nothing renewed it since, it would be free. Returns the lease as it was."""
    before = lease_of(engine, batch_id)

    def passed() -> bool:
        with engine.connect() as conn:
            return bool(
                conn.execute(text("SELECT now() > :t"), {"t": before.lease_until}).scalar_one()
            )

    eventually(passed, "the lease as it stood to run out", timeout=30)
    return before


def take_over(engine: Engine, batch_id: str) -> None:
    """What another process does once the lease ran out: take it under its own token."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE batches SET lease_owner = 'another-process',"
                " lease_until = now() + interval '60 seconds' WHERE id = :id"
            ),
            {"id": batch_id},
        )


def job_count(engine: Engine, batch_id: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM jobs WHERE batch_id = :b"), {"b": batch_id}
            ).scalar_one()
        )


def validating_parquet_batch(
    engine: Engine, s3: Any, settings: Settings, model: str, made: list[str]
) -> str:
    """A `validating` batch of LINES fraud lines in a Parquet file, older than any other."""
    tenant = f"lease-{os.urandom(4).hex()}"
    prefix = f"s3://{settings.s3_bucket}/tenants/{tenant}/"
    table = pa.Table.from_pylist(
        [{"custom_id": f"c{i}", **x} for i, x in enumerate(rows(LINES, seed=21), 1)]
    )
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    bucket, key = split_uri(prefix + "in/rows.parquet")
    s3.put_object(Bucket=bucket, Key=key, Body=sink.getvalue().to_pybytes())
    batch_id = new_batch_id()
    made.append(batch_id)
    with engine.begin() as conn:
        conn.execute(
            batches.insert().values(
                id=batch_id,
                tenant=tenant,
                model=model,
                version="production",
                status="validating",
                input_uri=prefix + "in/rows.parquet",
                output_prefix=prefix + "out/",
                created_at=LONG_AGO,
            )
        )
    return batch_id


def resubmission_batch(
    engine: Engine, s3: Any, settings: Settings, model: str, made: list[str]
) -> str:
    """A `validating` resubmission of a batch whose LINES jobs all failed: its ingest
    writes their lines as its input first."""
    tenant = f"lease-{os.urandom(4).hex()}"
    prefix = f"s3://{settings.s3_bucket}/tenants/{tenant}/"
    failed, batch_id = new_batch_id(), new_batch_id()
    made.extend([failed, batch_id])
    common = {"tenant": tenant, "model": model, "output_prefix": prefix + "out/"}
    with engine.begin() as conn:
        conn.execute(
            batches.insert().values(
                id=failed, version="1", status="completed", input_uri=prefix + "in.jsonl", **common
            )
        )
        conn.execute(
            jobs.insert(),
            [
                {
                    "id": batch_job_id(failed, line),
                    "tenant": tenant,
                    "model": model,
                    "version": 1,
                    "status": "failed",
                    "lane": "batch",
                    "inputs": inputs,
                    "batch_id": failed,
                    "line": line,
                    "custom_id": f"c{line}",
                }
                for line, inputs in enumerate(rows(LINES, seed=22), 1)
            ],
        )
        conn.execute(
            batches.insert().values(
                id=batch_id,
                version="production",
                status="validating",
                input_uri=prefix + f"out/{batch_id}/input.jsonl",
                resubmitted_from=failed,
                created_at=LONG_AGO,
                **common,
            )
        )
    return batch_id


MakeBatch = Callable[[Engine, Any, Settings, str, list[str]], str]
# Long steps of an ingest that write nothing to the batch: the S3 call each waits in,
# the batch that has it, and the settings that make it happen.
LONG_STEPS: dict[str, tuple[str, MakeBatch, dict[str, Any]]] = {
    "parquet download": ("download_fileobj", validating_parquet_batch, {}),
    "resubmission input": ("upload_fileobj", resubmission_batch, {}),
    "claim-check uploads": ("put_object", validating_parquet_batch, {"claim_check_bytes": 1}),
}


def ended_batch(engine: Engine, settings: Settings, made: list[str]) -> str:
    """A `running` batch of three lines whose jobs all succeeded: the results writer's."""
    tenant = f"lease-{os.urandom(4).hex()}"
    batch_id = new_batch_id()
    made.append(batch_id)
    with engine.begin() as conn:
        conn.execute(
            batches.insert().values(
                id=batch_id,
                tenant=tenant,
                model="m",
                version="1",
                status="running",
                input_uri=f"s3://{settings.s3_bucket}/tenants/{tenant}/in.jsonl",
                output_prefix=f"s3://{settings.s3_bucket}/tenants/{tenant}/out/",
                total=3,
            )
        )
        conn.execute(
            jobs.insert(),
            [
                {
                    "id": batch_job_id(batch_id, line),
                    "tenant": tenant,
                    "model": "m",
                    "version": 1,
                    "status": "succeeded",
                    "lane": "batch",
                    "inputs": {"x": line},
                    "outputs": {"y": line},
                    "batch_id": batch_id,
                    "line": line,
                    "custom_id": f"r{line}",
                }
                for line in (1, 2, 3)
            ],
        )
    return batch_id


@pytest.mark.parametrize("step", list(LONG_STEPS))
def test_a_heartbeat_keeps_an_ingest_s_batch_from_other_takers_across_a_long_step(
    step: str,
    engine: Engine,
    s3: Any,
    kafka: str,
    short: Settings,
    publish_model,
    made: list[str],
) -> None:
    method, make_batch, update = LONG_STEPS[step]
    settings = short.model_copy(update=update)
    model = publish_model()
    batch_id = make_batch(engine, s3, settings, model.name, made)
    held = HeldS3(s3, method)
    first = InThread(lambda: ingest_next(engine, held, settings))
    assert held.entered.wait(timeout=30)
    taken = run_out(engine, batch_id)

    assert take(engine, batch_id, VALIDATING, LEASE_S) is None
    ingest_next(engine, s3, settings)  # a second ingest: it may take any batch but this one
    now = lease_of(engine, batch_id)
    assert now.lease_owner == taken.lease_owner
    assert now.held
    assert now.lease_until > taken.lease_until

    held.go.set()
    assert first.result() == "queued"
    after = lease_of(engine, batch_id)
    assert (after.status, after.total, after.lease_owner, after.lease_until) == (
        "queued",
        LINES,
        None,
        None,
    )
    assert job_count(engine, batch_id) == LINES


def test_an_ingest_whose_lease_was_taken_over_writes_nothing_more(
    engine: Engine, s3: Any, kafka: str, short: Settings, publish_model, made: list[str]
) -> None:
    model = publish_model()
    batch_id = validating_parquet_batch(engine, s3, short, model.name, made)
    held = HeldS3(s3, "download_fileobj")
    first = InThread(lambda: ingest_next(engine, held, short))
    assert held.entered.wait(timeout=30)
    take_over(engine, batch_id)

    held.go.set()
    with pytest.raises(LeaseLostError, match=batch_id):
        first.result()
    after = lease_of(engine, batch_id)
    assert (after.status, after.total, after.version, after.lease_owner) == (
        "validating",
        0,
        "production",
        "another-process",
    )
    assert job_count(engine, batch_id) == 0


def test_an_ingest_whose_batch_was_cancelled_meanwhile_stops_with_nothing_enqueued(
    engine: Engine, s3: Any, kafka: str, short: Settings, publish_model, made: list[str]
) -> None:
    model = publish_model()
    batch_id = validating_parquet_batch(engine, s3, short, model.name, made)
    held = HeldS3(s3, "download_fileobj")
    first = InThread(lambda: ingest_next(engine, held, short))
    assert held.entered.wait(timeout=30)
    with engine.begin() as conn:  # what POST /v1/batches/{id}/cancel writes
        conn.execute(
            batches.update()
            .where(batches.c.id == batch_id)
            .values(status="cancelled", lease_until=None, lease_owner=None)
        )

    held.go.set()
    assert first.result() == "cancelled"
    assert lease_of(engine, batch_id).status == "cancelled"
    assert job_count(engine, batch_id) == 0


def test_a_heartbeat_keeps_a_results_writer_s_batch_across_a_long_upload(
    engine: Engine, s3: Any, short: Settings, made: list[str]
) -> None:
    batch_id = ended_batch(engine, short, made)
    held = HeldS3(s3, "upload_fileobj")
    first = InThread(lambda: complete(engine, held, short, batch_id))
    assert held.entered.wait(timeout=30)
    taken = run_out(engine, batch_id)

    assert complete(engine, s3, short, batch_id) is False
    now = lease_of(engine, batch_id)
    assert now.lease_owner == taken.lease_owner
    assert now.held

    held.go.set()
    assert first.result() is True
    after = lease_of(engine, batch_id)
    with engine.connect() as conn:
        uri = conn.execute(
            text("SELECT output_prefix FROM batches WHERE id = :id"), {"id": batch_id}
        ).scalar_one()
    assert (after.status, after.output_uri, after.lease_owner) == (
        "completed",
        results_uri(uri),
        None,
    )
    bucket, key = split_uri(after.output_uri)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    lines = [json.loads(line) for line in io.BytesIO(body)]
    assert [line["custom_id"] for line in lines] == ["r1", "r2", "r3"]


def test_a_results_writer_whose_lease_was_taken_over_does_not_complete_the_batch(
    engine: Engine, s3: Any, short: Settings, made: list[str]
) -> None:
    batch_id = ended_batch(engine, short, made)
    held = HeldS3(s3, "upload_fileobj")
    first = InThread(lambda: complete(engine, held, short, batch_id))
    assert held.entered.wait(timeout=30)
    take_over(engine, batch_id)

    held.go.set()
    with pytest.raises(LeaseLostError, match=batch_id):
        first.result()
    after = lease_of(engine, batch_id)
    assert (after.status, after.output_uri, after.lease_owner) == (
        "running",
        None,
        "another-process",
    )
