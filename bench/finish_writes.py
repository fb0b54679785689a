"""The worker's result write, statement against statement.

    .venv/bin/python bench/finish_writes.py [--batches 20] [--batch 2000] [--history 0]

Writes the results of `--batch` claimed jobs (`running` under a token, as a claim
leaves them) with each way in turn, `--batches` times each, alternating, on rows of its
own in the database of the settings (`INFERFLEET_DATABASE_URL`):

- unnest: one UPDATE … FROM unnest(arrays), the five columns bound as arrays (the
  worker's statement before it took its rows by COPY);
- copy: `worker.persist.finish`, COPY into a temporary table, then one UPDATE … FROM
  it; the status and claim-token guards are the same.

Both run in one transaction with the webhook events, as `persist.finish` does, and
return the written IDs. It prints milliseconds per batch (median, p90). `--history`
terminal rows are inserted first (and ANALYZEd) so the planner sees a table that is
mostly history. Its rows are deleted at the end. Timings are for reading, never for
asserting.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `bench` importable as a package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import Engine, text

from bench.workload import analyze, insert_queued, make_jobs
from inferfleet.clients.db import make_engine
from inferfleet.jobs.outbox import add_job_events
from inferfleet.settings import load_settings
from inferfleet.tables import jobs
from worker import persist
from worker.batching import Outcome

OUTPUTS = {"label": 0, "probabilities": [0.9, 0.1]}
HOLDER = "bench-finish-writes"  # the claim token a worker would write
SCHEMA = {"properties": {"merchant_category": {"enum": ["grocery", "travel"]}}}

# What `worker.persist.FINISH` was before it took its rows by COPY.
UNNEST = text(
    """
    UPDATE jobs AS j
       SET status = v.status, outputs = v.outputs, output_uri = v.output_uri,
           error = v.error, completed_at = now()
      FROM unnest(CAST(:ids AS text[]), CAST(:statuses AS text[]),
                  CAST(:outputs AS jsonb[]), CAST(:output_uris AS text[]),
                  CAST(:errors AS jsonb[]))
           AS v(id, status, outputs, output_uri, error)
     WHERE j.id = v.id AND j.status = 'running' AND j.claim_token = :token
    RETURNING j.id, j.webhook IS NOT NULL AND j.batch_id IS NULL AS notify
    """
)


def finish_unnest(engine: Engine, outcomes: Sequence[Outcome]) -> int:
    rows = [persist._encode(o) for o in outcomes]
    params = {
        "ids": [o.job_id for o in outcomes],
        "statuses": ["succeeded" if error is None else "failed" for _, error in rows],
        "outputs": [outputs for outputs, _ in rows],
        "output_uris": [o.output_uri for o in outcomes],
        "errors": [error for _, error in rows],
        "token": HOLDER,
    }
    with engine.begin() as conn:
        finished = list(conn.execute(UNNEST, params))
        add_job_events(conn, [r.id for r in finished if r.notify], 60)
        return len(finished)


def finish_copy(engine: Engine, outcomes: Sequence[Outcome]) -> int:
    return len(persist.finish(engine, outcomes, token=HOLDER, retry_window_s=60).finished)


WAYS: dict[str, Callable[[Engine, Sequence[Outcome]], int]] = {
    "UPDATE FROM unnest(arrays)": finish_unnest,
    "COPY to a temp table + UPDATE (persist)": finish_copy,
}


def claimed(engine: Engine, model: str, count: int) -> list[str]:
    """`count` rows `running` under the bench's token, as a claim leaves them."""
    batch = make_jobs(SCHEMA, count, seed=secrets.randbits(32))
    insert_queued(engine, model, 1, batch, "finish")
    ids = [j.id for j in batch]
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE jobs SET status = 'running', claim_token = :t WHERE id = ANY(:ids)"),
            {"t": HOLDER, "ids": ids},
        )
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--history", type=int, default=0)
    args = parser.parse_args()
    engine = make_engine(load_settings(), pool_size=1)
    model = f"bench-finish-{secrets.token_hex(4)}"
    seconds: dict[str, list[float]] = {name: [] for name in WAYS}
    try:
        if args.history:
            insert_queued(engine, model, 1, make_jobs(SCHEMA, args.history, seed=1), "history")
            with engine.begin() as conn:
                conn.execute(jobs.update().where(jobs.c.model == model).values(status="succeeded"))
            analyze(engine)
        for _ in range(args.batches):
            for name, way in WAYS.items():
                ids = claimed(engine, model, args.batch)
                outcomes = [Outcome(i, outputs=OUTPUTS) for i in ids]
                started = time.perf_counter()
                written = way(engine, outcomes)
                seconds[name].append(time.perf_counter() - started)
                assert written == len(ids), f"{name} wrote {written} of {len(ids)}"
        print(f"\nresults of {args.batch:,} jobs, {args.batches} batches each (ms per batch):")
        for name, values in seconds.items():
            ordered = sorted(values)
            p90 = ordered[int(0.9 * (len(ordered) - 1))]
            print(
                f"  {name:40} median {statistics.median(values) * 1000:7.1f}  p90 {p90 * 1000:7.1f}"
            )
        print(json.dumps({name: statistics.median(v) for name, v in seconds.items()}))
    finally:
        with engine.begin() as conn:
            conn.execute(jobs.delete().where(jobs.c.model == model))
        engine.dispose()


if __name__ == "__main__":
    main()
