"""Sentence embeddings: bare ONNX Runtime against the batched worker, on the MiniLM package.

    .venv/bin/python bench/embeddings.py [--jobs 20000] [--sentences 2048] [--poll-max-records N]

Needs the local stack, a migrated database and the MiniLM package
(`.venv/bin/python models/minilm/build.py build/models/minilm`). The model is published
under a fresh name (`bench-<hex>`); the requests are seeded sentences of 8 to 60 words
(`bench.inputs.synthetic_sentences`), the same texts for every measurement. One run:

a) bare ONNX Runtime, sentences/s over the first `--sentences` texts in arrival order,
   split into calls of 1, 8, 32, 64 (the manifest's `preferred_batch_size`, the worker's
   call size) and 128, each call padded to its longest sequence:
   - tokenization excluded: feeds built beforehand, only `session.run` timed;
   - tokenization included: the worker's own `LoadedModel.run` (its `Tokenize` step,
     then `session.run`) timed.
   One more row at the worker's call size sorts the texts by length within each
   poll-sized window first, as `worker.batching.chunks` buckets a polled batch.
b) the worker end to end: `--jobs` queued rows with `{"text": ...}` inputs and their
   messages already on Kafka before `python -m worker` starts; sentences/s from the
   first job's `started_at` to the poll that sees every row terminal (as in
   `bench/throughput.py`), then SIGTERM.

Both use the same ONNX Runtime threads (`--intra-op-threads`, default one per core; the
worker runs one process) and the tokenizers library's default thread pool. The ratio
b / a (tokenization included, the worker's call size, arrival order) has a target of
0.8 or more. Everything the run made is removed at the end (`--keep` leaves it).
Timings are for reading, never for asserting.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import math
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make `bench` importable as a package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import onnxruntime as ort
from sqlalchemy import Engine, text

from bench.worker_process import WorkerRun, run_worker, worker_group
from bench.workload import jobs_from, publish_fresh, remove, synthetic_requests
from inferfleet.clients.db import make_engine
from inferfleet.clients.objectstore import make_s3_client
from inferfleet.models.preprocessing import Tokenize
from inferfleet.models.registry import ModelVersion
from inferfleet.settings import Settings, load_settings
from worker.runtime import LoadedModel, open_model

REPO = Path(__file__).resolve().parents[1]
RUN = "bench-embeddings"
BATCH_SIZES = (1, 8, 32, 128)
SEED = 7

Row = Mapping[str, Any]

OUTPUT_SIZE = text(
    "SELECT avg(length(outputs::text)) AS json_chars, avg(pg_column_size(outputs)) AS stored "
    "FROM jobs WHERE model = :model AND request_id = :run AND status = 'succeeded'"
)


class OtherCpu:
    """CPU seconds that processes other than this one and its children used, on Linux.

    The machine's busy time (/proc/stat) less this process's and its reaped children's
    (getrusage): during a) that is interference; during b) it is mostly Postgres and
    Kafka serving the worker. NaN where /proc/stat cannot be read.
    """

    def __init__(self) -> None:
        self._busy, self._own, self._wall = _busy_s(), _own_s(), time.monotonic()

    def cores(self) -> float:
        """Average cores used by other processes since this object was made."""
        other = (_busy_s() - self._busy) - (_own_s() - self._own)
        return max(0.0, other) / (time.monotonic() - self._wall)


def _busy_s() -> float:
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return math.nan
    idle = fields[3] + fields[4]  # idle and iowait; guest time is already in user
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_s() -> float:
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


@dataclass(frozen=True)
class OrtRow:
    """Bare ONNX Runtime at one call size, over the same texts both ways."""

    label: str
    batch: int
    bucketed: bool
    excluded_per_s: float  # session.run alone
    included_per_s: float  # tokenize + session.run
    padding: float  # share of the fed token positions that are padding


def calls_of(rows: Sequence[Row], batch: int, window: int | None, field: str) -> list[list[Row]]:
    """`rows` in calls of `batch`; with `window`, sorted by text length within each window.

    The window is the worker's poll: `worker.batching.chunks` sorts a polled group by
    `len(text)` and splits it, so a call never mixes texts of two polls.
    """
    if window is None:
        return [list(rows[i : i + batch]) for i in range(0, len(rows), batch)]
    calls: list[list[Row]] = []
    for start in range(0, len(rows), window):
        ordered = sorted(rows[start : start + window], key=lambda row: len(row[field]))
        calls.extend(ordered[i : i + batch] for i in range(0, len(ordered), batch))
    return calls


def measure_ort(
    model: LoadedModel, calls: Sequence[Sequence[Row]], batch: int, bucketed: bool, label: str
) -> OrtRow:
    """Time every call once with tokenization excluded, then once with it included."""
    feeds = [model.preprocess(call) for call in calls]
    count = sum(len(call) for call in calls)
    tokens = sum(int(feed["attention_mask"].sum()) for feed in feeds)
    positions = sum(int(feed["attention_mask"].size) for feed in feeds)
    model.run(calls[0])  # the first call at a new shape pays ONNX Runtime's allocations
    names = [spec.name for spec in model.inputs]
    started = time.perf_counter()
    for feed in feeds:
        model.session.run(model.output_names, {name: feed[name] for name in names})
    excluded = time.perf_counter() - started
    started = time.perf_counter()
    for call in calls:
        model.run(call)
    included = time.perf_counter() - started
    return OrtRow(
        label, batch, bucketed, count / excluded, count / included, 1 - tokens / positions
    )


def measure_bare(model: LoadedModel, rows: Sequence[Row], args: argparse.Namespace) -> list[OrtRow]:
    """Rows of a): every batch size in arrival order, then the worker's bucketed calls."""
    if not isinstance(model.preprocess, Tokenize):
        raise SystemExit(f"{model.name} is not a text model: its preprocessing is not a tokenizer")
    field = model.preprocess.text_field
    results = []
    for batch in sorted({*args.batch_sizes, model.batch_size}):
        label = f"{batch}, worker's call size" if batch == model.batch_size else f"{batch}"
        results.append(measure_ort(model, calls_of(rows, batch, None, field), batch, False, label))
        print(
            f"a) batch {batch}: {results[-1].excluded_per_s:,.0f} / "
            f"{results[-1].included_per_s:,.0f} sentences/s",
            flush=True,
        )
    window = args.poll_max_records
    calls = calls_of(rows, model.batch_size, window, field)
    label = f"{model.batch_size}, bucketed per {window:,}"
    results.append(measure_ort(model, calls, model.batch_size, True, label))
    return results


def measure_worker(
    settings: Settings,
    engine: Engine,
    version: ModelVersion,
    requests: Sequence[dict[str, Any]],
    tmp: Path,
    logs: Path,
    args: argparse.Namespace,
) -> WorkerRun:
    """The worker over `requests` already queued, with the bench's threads and poll size."""
    env = {
        "INFERFLEET_MODEL_CACHE_DIR": str(tmp / "worker-cache"),
        "INFERFLEET_INTRA_OP_THREADS": str(args.intra_op_threads),
        "INFERFLEET_POLL_MAX_RECORDS": str(args.poll_max_records),
    }
    return run_worker(
        settings,
        engine,
        version,
        jobs_from(requests),
        RUN,
        env,
        logs / "worker.log",
        args.analyze,
    )


def report(
    args: argparse.Namespace,
    model: LoadedModel,
    token_counts: Sequence[int],
    a: Sequence[OrtRow],
    b: WorkerRun,
    output_size: Any,
    other_cores: tuple[float, float],
) -> str:
    """The table, the ratios and the settings behind them."""
    b_rate = b.completion.rate(args.jobs)
    at_call_size = next(r for r in a if r.batch == model.batch_size and not r.bucketed)
    bucketed = next(r for r in a if r.bucketed)
    span = (b.completion.seen_done - b.completion.first_started).total_seconds()
    busy = sum(b.batch_seconds)
    lines = [
        "",
        f"machine: {os.cpu_count()} cores ({_cpu_name()}); onnxruntime {ort.__version__} on "
        f"{model.provider}, intra-op threads {args.intra_op_threads} in a) and b); tokenizers "
        f"{importlib.metadata.version('tokenizers')} with its default thread pool",
        f"other processes used {other_cores[0]:.2f} cores during a), {other_cores[1]:.2f} "
        "during b) (Postgres, Kafka and anything else on the machine)",
        f"texts: {len(token_counts):,} sentences of 8 to 60 words, tokens min/median/max "
        f"{min(token_counts)}/{statistics.median(token_counts):.0f}/{max(token_counts)}",
        "",
        f"{'':4}{'measured':50}{'tokenization':>14}{'tokenization':>14}{'padding':>9}",
        f"{'':4}{'':50}{'excluded':>14}{'included':>14}{'':>9}",
    ]
    for i, row in enumerate(a):
        what = f"bare ONNX Runtime, batch {row.label}"
        lines.append(
            f"{'a)' if i == 0 else '':4}{what:50}{row.excluded_per_s:>14,.0f}"
            f"{row.included_per_s:>14,.0f}{row.padding:>9.0%}"
        )
    lines += [
        f"{'b)':4}{f'worker, {args.jobs:,} jobs already on Kafka':50}{'':14}{b_rate:>14,.0f}",
        f"{'':4}{f'b / a (included, batch {model.batch_size}, arrival order)':78}"
        f"{b_rate / at_call_size.included_per_s:>14.2f}   target >= 0.8",
        f"{'':4}{f'b / a (included, batch {bucketed.label})':78}"
        f"{b_rate / bucketed.included_per_s:>14.2f}",
        "",
        f"a) sentences/s over {args.sentences:,} texts, each call once; padding = share of "
        "the fed token positions that are padding",
        f"b) poll_max_records={args.poll_max_records}; first started_at -> poll seeing all "
        f"ended {span:.2f} s; by database clock {b.completion.db_rate(args.jobs):,.0f}/s; "
        f"/readyz 200 -> all ended {b.ready_to_done_s:.2f} s; statuses "
        f"{b.completion.statuses}; exit code {b.exit_code}",
        f"   {len(b.batch_sizes)} batches; records {_spread(b.batch_sizes, '.0f')}; "
        f"seconds {_spread(b.batch_seconds, '.3f')}",
        f"   sum of batch seconds {busy:.2f} s = {busy / span:.0%} of the span; the rest is "
        "poll (fetch + record parsing) and the first claim's wait",
        f"   outputs per job: {float(output_size.json_chars or 0):,.0f} JSON characters, "
        f"{float(output_size.stored or 0):,.0f} bytes stored (jsonb)",
    ]
    return "\n".join(lines)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def _spread(values: Sequence[float], fmt: str) -> str:
    if not values:
        return "none"
    ordered = sorted(values)
    p90 = ordered[int(0.9 * (len(ordered) - 1))]
    parts = (min(ordered), statistics.median(ordered), p90, max(ordered))
    return "min/median/p90/max " + "/".join(format(v, fmt) for v in parts)


def _batch_sizes(value: str) -> list[int]:
    return [int(part) for part in value.split(",") if part.strip()]


def parse_args(settings: Settings, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options; the poll size defaults to the worker's setting."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs for the worker (b)")
    parser.add_argument(
        "--sentences", type=int, default=2_048, help="texts each bare measurement runs (a)"
    )
    parser.add_argument(
        "--batch-sizes",
        type=_batch_sizes,
        default=list(BATCH_SIZES),
        help="bare call sizes, comma-separated; the manifest's call size is always added",
    )
    parser.add_argument(
        "--intra-op-threads",
        type=int,
        default=os.cpu_count() or 1,
        help="ONNX Runtime intra-op threads in a) and b) (default: one per core)",
    )
    parser.add_argument(
        "--poll-max-records",
        type=int,
        default=settings.poll_max_records,
        help="the worker's INFERFLEET_POLL_MAX_RECORDS, and a)'s bucketing window",
    )
    parser.add_argument("--seed", type=int, default=SEED, help="seed of the sentences")
    parser.add_argument("--package", type=Path, default=REPO / "build" / "models" / "minilm")
    parser.add_argument("--keep", action="store_true", help="leave the rows, topics and model")
    parser.add_argument(
        "--no-analyze",
        dest="analyze",
        action="store_false",
        help="skip ANALYZE jobs after the inserts (claim plans then depend on autoanalyze)",
    )
    parser.add_argument("--logs", type=Path, help="keep worker.log in this folder")
    return parser.parse_args(argv)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="inferfleet-bench-") as tmp_name:
        tmp = Path(tmp_name)
        args = parse_args(load_settings())
        settings = load_settings(
            model_cache_dir=tmp / "publish-cache", intra_op_threads=args.intra_op_threads
        )
        engine = make_engine(settings, pool_size=2)
        s3 = make_s3_client(settings)
        version = publish_fresh(settings, engine, s3, args.package)
        print(f"published {version.name} v{version.version}", flush=True)
        try:
            requests = synthetic_requests(version, max(args.jobs, args.sentences), args.seed)
            model = open_model(version, {f: args.package / f for f in version.files}, settings)
            rows = requests[: args.sentences]
            token_counts = [
                int(n) for n in np.sum(model.preprocess(rows)["attention_mask"], axis=1)
            ]
            during_a = OtherCpu()
            a = measure_bare(model, rows, args)
            other_a = during_a.cores()
            logs = args.logs or tmp
            logs.mkdir(parents=True, exist_ok=True)
            during_b = OtherCpu()
            b = measure_worker(settings, engine, version, requests[: args.jobs], tmp, logs, args)
            other_b = during_b.cores()
            print(f"b) {b.completion.rate(args.jobs):,.0f} sentences/s", flush=True)
            with engine.connect() as conn:
                size = conn.execute(OUTPUT_SIZE, {"model": version.name, "run": RUN}).one()
            print(report(args, model, token_counts, a, b, size, (other_a, other_b)))
        finally:
            if args.keep:
                print(f"kept {version.name}: its job rows, registry rows, topics and S3 objects")
            else:
                remove(settings, engine, s3, version, worker_group(version))
            engine.dispose()


if __name__ == "__main__":
    main()
