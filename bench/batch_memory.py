"""Peak memory and speed of batch ingest and of the results writer, by input size.

    .venv/bin/python bench/batch_memory.py [--lines 100000 1000000] [--package DIR]

Needs the local stack, a migrated database and the demo package (see bench/README.md).
For each size in `--lines`, on a model published under a fresh name (`bench-<hex>`):

1. a JSONL file of that many valid fraud lines is generated and streamed to S3 (a
   multipart upload fed by a generator; the file is never in memory);
2. a `validating` batch row names it, and a fresh process (`spawn`) runs the real
   ingest on it (`scheduler.ingest.Ingest`: stream from S3, validate, spool, insert
   the jobs in chunks, produce them to Kafka, set `produced_at`);
3. every job is then marked `succeeded` with an output by one SQL statement, not by a
   worker: this measures the batch machinery, not inference (`bench/throughput.py`
   measures the worker);
4. another fresh process runs the real results writer on it
   (`scheduler.results.write_results`: a server-side cursor over the jobs in line
   order, a multipart upload of `results.jsonl`), and the file is read back, streamed,
   to check one line per input line in order.

Each process reports its resident set once its imports and connections are made (the
start), the peak resident set while it worked (Linux's `VmHWM`, reset at the start
through `/proc/self/clear_refs`), the peak before that (imports), and lines/s. If the
peak does not grow with the line count, nothing holds the file. (`ru_maxrss` would not
do: Linux keeps it across fork and exec, so a spawned child starts with its parent's.)

Batches are leased to the bench for the run (its own lease token, `OWNER`), so a
scheduler running against the same database leaves them alone. Everything the run made
(rows, topics, S3 objects) is deleted at the end. Figures are for reading, never for asserting.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import random
import secrets
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make `bench` importable as a package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import func, text

from inferfleet.clients.db import make_engine
from inferfleet.clients.objectstore import make_s3_client, split_uri
from inferfleet.ids import new_batch_id
from inferfleet.settings import Settings, load_settings
from inferfleet.tables import batches
from scheduler.batchresults import results_uri, upload_lines

REPO = Path(__file__).resolve().parents[1]
TENANT = "bench"
CATEGORIES = ["electronics", "fashion", "gaming", "gift_cards", "grocery", "travel"]
# The bench holds its batches this long, under this lease token, so no scheduler
# process takes them meanwhile.
HOLD_S = 6 * 3600.0
OWNER = "bench-batch-memory"

MARK_DONE = text(
    """
    UPDATE jobs
       SET status = 'succeeded', started_at = now(), completed_at = now(), attempts = 1,
           outputs = jsonb_build_object(
               'label', line % 2,
               'probabilities', jsonb_build_array(0.25 + (line % 2) * 0.5,
                                                  0.75 - (line % 2) * 0.5))
     WHERE batch_id = :b
    """
)


def lines(count: int, seed: int) -> Iterator[bytes]:
    """`count` valid JSONL lines of the fraud model, made as they are read."""
    rng = random.Random(seed)
    for n in range(1, count + 1):
        inputs = {
            "transaction_amount": round(rng.lognormvariate(4.0, 1.2), 2),
            "merchant_category": rng.choice(CATEGORIES),
            "user_account_age_days": rng.randrange(0, 3650),
            "hour_of_day": rng.randrange(0, 24),
        }
        yield json.dumps({"custom_id": f"row-{n}", "inputs": inputs}).encode() + b"\n"


def status_mib(field: str) -> float:
    """A `kB` line of /proc/self/status (`VmRSS`, `VmHWM`), in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise SystemExit(f"no {field} in /proc/self/status (Linux only)")


def start_measuring() -> tuple[float, float]:
    """The peak resident set so far and the current one; then the peak is reset to the
    current one."""
    before = status_mib("VmHWM")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return before, status_mib("VmRSS")


def measured(start: tuple[float, float], seconds: float) -> dict[str, float]:
    return {
        "seconds": seconds,
        "imports_peak": start[0],
        "start": start[1],
        "peak": status_mib("VmHWM"),
    }


def run_ingest(settings: Settings, batch_id: str, out: Any) -> None:
    """In a fresh process: the real ingest of one batch."""
    from kafka import KafkaProducer

    from inferfleet.clients.broker import make_producer
    from scheduler.ingest import VALIDATING, Ingest
    from scheduler.lease import Lease

    engine = make_engine(settings, pool_size=2)
    s3 = make_s3_client(settings)
    with engine.connect() as conn:
        batch = conn.execute(batches.select().where(batches.c.id == batch_id)).one()
    made: list[KafkaProducer] = [make_producer(settings, client_id="bench-batch")]
    start = start_measuring()
    started = time.perf_counter()
    lease = Lease(engine, batch_id, OWNER, HOLD_S, VALIDATING)
    outcome = Ingest(engine, s3, lambda: made[0], settings, batch, lease).run()
    result = measured(start, time.perf_counter() - started)
    made[0].close(timeout=10)
    out.put({"outcome": outcome, **result})


def run_writer(settings: Settings, batch_id: str, out: Any) -> None:
    """In a fresh process: the real results writer of one batch."""
    from scheduler.lease import Lease
    from scheduler.results import UNDER_WAY, write_results

    engine = make_engine(settings, pool_size=2)
    s3 = make_s3_client(settings)
    with engine.connect() as conn:
        batch = conn.execute(batches.select().where(batches.c.id == batch_id)).one()
    start = start_measuring()
    started = time.perf_counter()
    lease = Lease(engine, batch_id, OWNER, HOLD_S, UNDER_WAY)
    write_results(engine, s3, batch, results_uri(batch.output_prefix), lease)
    out.put(measured(start, time.perf_counter() - started))


def in_fresh_process(target: Any, settings: Settings, batch_id: str) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=target, args=(settings, batch_id, queue))
    process.start()
    result: dict[str, Any] = queue.get()
    process.join()
    return result


def check_results(s3: Any, uri: str, count: int) -> None:
    """Read the results file back as a stream: one line per input line, in order."""
    bucket, key = split_uri(uri)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    seen = 0
    for seen, raw in enumerate(body.iter_lines(chunk_size=1 << 20), 1):
        line = json.loads(raw)
        if line["custom_id"] != f"row-{seen}" or line["status"] != "succeeded":
            raise SystemExit(f"results line {seen} is {line}")
    if seen != count:
        raise SystemExit(f"results has {seen} lines for {count} input lines")


def measure(settings: Settings, engine: Any, s3: Any, model: str, count: int) -> dict[str, Any]:
    prefix = f"s3://{settings.s3_bucket}/tenants/{TENANT}/batch-memory/{secrets.token_hex(4)}/"
    input_uri = prefix + "in.jsonl"
    started = time.perf_counter()
    upload_lines(s3, input_uri, lines(count, seed=count), "application/x-ndjson")
    generated = time.perf_counter() - started
    batch_id = new_batch_id()
    with engine.begin() as conn:
        conn.execute(
            batches.insert().values(
                id=batch_id,
                tenant=TENANT,
                model=model,
                version="production",
                status="validating",
                input_uri=input_uri,
                output_prefix=prefix + "out/",
                lease_until=func.now() + timedelta(seconds=HOLD_S),
                lease_owner=OWNER,
            )
        )
    try:
        ingest = in_fresh_process(run_ingest, settings, batch_id)
        if ingest["outcome"] != "queued":
            raise SystemExit(f"ingest ended {ingest['outcome']}")
        with engine.begin() as conn:
            conn.execute(
                batches.update()
                .where(batches.c.id == batch_id)
                .values(lease_until=func.now() + timedelta(seconds=HOLD_S), lease_owner=OWNER)
            )
            conn.execute(MARK_DONE, {"b": batch_id})
            conn.execute(text("ANALYZE jobs"))
        writer = in_fresh_process(run_writer, settings, batch_id)
        check_results(s3, results_uri(prefix + "out/"), count)
    finally:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM jobs WHERE batch_id = :b"), {"b": batch_id})
            conn.execute(batches.delete().where(batches.c.id == batch_id))
        for uri in (input_uri, results_uri(prefix + "out/")):
            bucket, key = split_uri(uri)
            s3.delete_object(Bucket=bucket, Key=key)
    return {"lines": count, "generated_s": generated, "ingest": ingest, "writer": writer}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--package", type=Path, default=REPO / "build" / "models" / "fraud")
    args = parser.parse_args()
    # Imported here, not at the top: the measured processes import this module, and
    # the publishing code would add ONNX Runtime and numpy to their resident set.
    from bench.workload import publish_fresh, remove

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    settings = load_settings(batch_lease_s=HOLD_S)
    engine = make_engine(settings)
    s3 = make_s3_client(settings)
    version = publish_fresh(settings, engine, s3, args.package)
    rows = []
    try:
        for count in args.lines:
            result = measure(settings, engine, s3, version.name, count)
            rows.append(result)
            for part in ("ingest", "writer"):
                m = result[part]
                print(
                    f"{count:>9,} lines  {part:<6} {m['seconds']:7.1f} s "
                    f"{count / m['seconds']:>8,.0f} lines/s  RSS at start {m['start']:6.1f} MiB, "
                    f"peak while working {m['peak']:6.1f} MiB "
                    f"(+{m['peak'] - m['start']:.1f}); peak before {m['imports_peak']:6.1f} MiB",
                    flush=True,
                )
    finally:
        remove(settings, engine, s3, version, group=f"{version.name}-none")
        engine.dispose()
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        extra = (last["lines"] - first["lines"]) / 1e6
        for part in ("ingest", "writer"):
            growth = [r[part]["peak"] - r[part]["start"] for r in (first, last)]
            slope = (growth[1] - growth[0]) / extra
            print(f"{part}: peak above start grows {slope:+.1f} MiB per extra million lines")


if __name__ == "__main__":
    main()
