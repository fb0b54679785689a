"""GPU: bare ONNX Runtime against the worker's own execution path, per call size.

    python bench/gpu.py --package build/models/minilm --package build/models/fraud \\
        [--provider cuda|cpu] [--sizes 1,2,4,...,1024] [--rows 4096] [--seconds 3] \\
        [--json OUT.json]

Runs in one process without Kafka, Postgres or S3, and imports only what the worker's
execution path needs (numpy, onnxruntime, tokenizers; pynvml if installed), so it runs
on a GPU machine that has none of the services' libraries (docs/gpu.md). For each
package, opened as the worker opens it (`worker.runtime.open_package`: providers,
options, I/O binding on a GPU, the warm-up), and for each call size:

- bare, tokenization excluded: the calls' feeds built beforehand, `session.run` timed;
- bare, tokenization included: the package's preprocessing (the worker's `Tokenize`,
  padding each call to its longest text) and `session.run`, timed;
- worker: the same requests as polled Kafka records through the worker's own code:
  decode (`worker.batching.decode_records`), plan (`group_by_version`), then
  `worker.inference.run_jobs` (bucket by length, chunk, tokenize, run through I/O
  binding on a GPU, split, bisect failures) and encode (each outcome's outputs as JSON,
  as the results transaction writes them).

Bare and worker run the very same calls: the requests of a size's window, sorted by
length and split as `worker.batching.chunks` splits a polled batch. Each measurement
repeats its calls until `--seconds` have passed; the GPU's busy share (NVML's
utilization, via pynvml or `nvidia-smi`) is sampled meanwhile. Printed: rows (or
sentences) per second, worker ÷ bare (tokenization included in both) at every size
and at the worker's call size (the manifest's `preferred_batch_size`), the busy shares.
Timings are for reading, never for asserting.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make `bench` importable as a package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import onnxruntime as ort

from bench.gpubusy import GpuBusy, device_name
from bench.inputs import synthetic_inputs, synthetic_sentences
from inferfleet.jobs.messages import JobMessage, encode
from inferfleet.models.sessions import CPU, CUDA, TENSORRT, SessionConfig
from worker.batching import chunks, decode_records, group_by_version
from worker.inference import run_jobs
from worker.runtime import LoadedModel, open_package

SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
PROVIDERS = {"tensorrt": [TENSORRT, CUDA, CPU], "cuda": [CUDA, CPU], "cpu": [CPU]}
# Each size runs over a window of at least this many requests, or this many calls.
MIN_WINDOW, MIN_CALLS = 256, 8
SEED = 7

Row = Mapping[str, Any]


@dataclass(frozen=True)
class Polled:
    """A job message as a poll returns it (what `decode_records` reads)."""

    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes


@dataclass(frozen=True)
class Timed:
    """One measurement: rows per second, and the GPU's busy share meanwhile (None
    where it cannot be read)."""

    per_s: float
    busy: float | None


@dataclass(frozen=True)
class SizeResult:
    """Bare and worker at one call size, over the same calls."""

    size: int
    rows: int
    bare_excluded: Timed
    bare_included: Timed
    worker: Timed

    @property
    def ratio(self) -> float:
        """worker ÷ bare, tokenization included in both."""
        return self.worker.per_s / self.bare_included.per_s


def open_folder(folder: Path, config: SessionConfig) -> tuple[LoadedModel, dict[str, Any]]:
    """The package in `folder` opened as a worker opens version 1 of it, and its manifest."""
    manifest: dict[str, Any] = json.loads((folder / "manifest.json").read_text("utf-8"))
    files = {path.name: path for path in folder.iterdir() if path.is_file()}
    return open_package(manifest["name"], 1, manifest, files, config), manifest


def requests_for(manifest: Mapping[str, Any], count: int) -> list[dict[str, Any]]:
    """`count` seeded requests the package accepts: sentences for a tokenizer step, else
    rows of the demo model's fields."""
    step = manifest.get("preprocessing") or {}
    if step.get("kind") == "tokenizer":
        field = step.get("text_field", "text")
        return [{field: text} for text in synthetic_sentences(count, SEED)]
    return synthetic_inputs(manifest["request_schema"], count, SEED)


def polled(model: LoadedModel, requests: Sequence[dict[str, Any]]) -> list[Polled]:
    """The requests as the records a worker polls (version-1 job messages)."""
    now = datetime.now(UTC)
    records = []
    for i, inputs in enumerate(requests):
        job_id = f"job-{i:08d}"
        message = JobMessage(
            job_id, "bench", model.name, model.version, inputs, None, now, None, None
        )
        records.append(Polled(f"jobs.{model.name}", 0, i, job_id.encode(), encode(message)))
    return records


def window(size: int, available: int) -> int:
    """How many requests a size runs over (module constants), at most `available`."""
    return min(available, max(MIN_WINDOW, size * MIN_CALLS))


def repeat(step: Callable[[], int], seconds: float, busy: GpuBusy) -> Timed:
    """Run `step` (which returns the rows it handled) until `seconds` have passed, at
    least once; rows per second and the GPU's busy share meanwhile."""
    rows = 0
    busy.start()
    started = time.perf_counter()
    while True:
        rows += step()
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            break
    return Timed(rows / elapsed, busy.stop())


def measure(
    model: LoadedModel, records: Sequence[Polled], size: int, seconds: float, busy: GpuBusy
) -> SizeResult:
    """Bare (both ways) and the worker over `records` at calls of `size`."""
    jobs, poison = decode_records(records)
    assert not poison, poison
    length = model.length
    by_length = None if length is None else (lambda job: length(job.inputs or {}))
    calls = [[job.inputs or {} for job in call] for call in chunks(jobs, size, by_length)]
    names = [spec.name for spec in model.inputs]
    session, outputs = model.session, model.output_names

    def feed(rows: Sequence[Row]) -> dict[str, Any]:
        made = model.preprocess(rows)
        return {name: made[name] for name in names}

    feeds = [feed(call) for call in calls]

    def bare_excluded() -> int:
        for f in feeds:
            session.run(outputs, f)
        return len(jobs)

    def bare_included() -> int:
        for call in calls:
            session.run(outputs, feed(call))
        return len(jobs)

    sized = replace(model, batch_size=size)

    def worker() -> int:
        decoded, _ = decode_records(records)
        done = 0
        for group in group_by_version(decoded):
            for outcome in run_jobs(sized, group.jobs):
                if outcome.outputs is None:
                    raise RuntimeError(f"job {outcome.job_id} failed: {outcome.error}")
                json.dumps(outcome.outputs, allow_nan=False)  # as worker.persist encodes
                done += 1
        return done

    worker()  # every call shape once, so no measurement pays a first call
    return SizeResult(
        size=size,
        rows=len(jobs),
        bare_excluded=repeat(bare_excluded, seconds, busy),
        bare_included=repeat(bare_included, seconds, busy),
        worker=repeat(worker, seconds, busy),
    )


def share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def table(name: str, unit: str, results: Sequence[SizeResult], worker_size: int) -> str:
    """The results of one package as a markdown table, and the ratio at `worker_size`."""
    lines = [
        f"### {name}: {unit}/s",
        "",
        "| call size | bare, tokenization excluded | bare, included | worker | worker ÷ bare "
        "| GPU busy: bare excl. / incl. / worker |",
        "| ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        mark = " (worker's)" if r.size == worker_size else ""
        busy = " / ".join(share(t.busy) for t in (r.bare_excluded, r.bare_included, r.worker))
        lines.append(
            f"| {r.size}{mark} | {r.bare_excluded.per_s:,.0f} | {r.bare_included.per_s:,.0f} "
            f"| {r.worker.per_s:,.0f} | {r.ratio:.2f} | {busy} |"
        )
    at = next((r for r in results if r.size == worker_size), None)
    if at is not None:
        lines += [
            "",
            f"{name}: worker ÷ bare ONNX Runtime (tokenization timed in both) at the worker's "
            f"call size {worker_size}: **{at.ratio:.2f}**; GPU busy share bare "
            f"{share(at.bare_included.busy)}, worker {share(at.worker.busy)}",
        ]
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--package", type=Path, action="append", required=True, help="package folder")
    p.add_argument("--provider", choices=sorted(PROVIDERS), default="cuda")
    p.add_argument("--device-id", type=int, default=0)
    p.add_argument("--sizes", default=",".join(map(str, SIZES)), help="comma-separated")
    p.add_argument("--rows", type=int, default=4096, help="requests per package")
    p.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    p.add_argument("--json", type=Path, help="also write the results here")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    config = SessionConfig(providers=PROVIDERS[args.provider], gpu_device_id=args.device_id)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    busy = GpuBusy(args.device_id if args.provider != "cpu" else None)
    print(
        f"onnxruntime {ort.__version__} ({', '.join(ort.get_available_providers())}), "
        f"Python {platform.python_version()}, device: {device_name(args.device_id)}, "
        f"GPU busy share from: {busy.source or 'nothing (no NVML, no nvidia-smi)'}",
        flush=True,
    )
    report: dict[str, Any] = {"onnxruntime": ort.__version__, "packages": []}
    for folder in args.package:
        model, manifest = open_folder(folder, config)
        text = model.length is not None
        unit = "sentences" if text else "rows"
        print(
            f"\n{model.name}: session runs on {model.provider}"
            f"{', I/O binding' if model.bound_device is not None else ''}; "
            f"worker call size {model.batch_size}",
            flush=True,
        )
        requests = requests_for(manifest, args.rows)
        results = []
        for size in sorted({*sizes, model.batch_size}):
            records = polled(model, requests[: window(size, len(requests))])
            results.append(measure(model, records, size, args.seconds, busy))
            r = results[-1]
            print(
                f"  size {size}: bare {r.bare_excluded.per_s:,.0f} / {r.bare_included.per_s:,.0f}"
                f" {unit}/s, worker {r.worker.per_s:,.0f} ({r.ratio:.2f})",
                flush=True,
            )
        print("\n" + table(model.name, unit, results, model.batch_size), flush=True)
        report["packages"].append(
            {
                "model": model.name,
                "provider": model.provider,
                "io_binding": model.bound_device is not None,
                "worker_batch_size": model.batch_size,
                "results": [{**asdict(r), "ratio": r.ratio} for r in results],
            }
        )
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
