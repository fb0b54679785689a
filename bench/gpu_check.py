"""Does the worker really run on the GPU? Checked on the machine itself, before the bench.

    python bench/gpu_check.py --package DIR [--package DIR ...] [--json OUT.json]

Run by `scripts/gpu-check.sh run` (docs/gpu.md) with the onnxruntime-gpu wheel first on
`sys.path`. For each package, opened as the worker opens it (`open_package` with the
default provider order, TensorRT → CUDA → CPU):

1. the session runs on `CUDAExecutionProvider` (or TensorRT where its libraries load),
   not on a CPU fallback;
2. the worker's provider report says so: `/readyz` and `/metrics` of the worker's own
   HTTP server (`worker.health`) name that provider for the model;
3. the outputs on the GPU (through I/O binding where the graph allows it) match a CPU
   session's on the same requests, and for a package that ships `reference.json`
   (MiniLM), the embeddings sentence-transformers gave.

Prints one line per check and exits 1 if any fails.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make `bench` importable as a package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import onnxruntime as ort
from prometheus_client import CollectorRegistry

from bench.gpu import open_folder, requests_for
from inferfleet.models.sessions import CPU, SessionConfig, on_gpu, tensorrt_loadable
from worker.health import Readiness, model_loaded_gauge, report_models, serve
from worker.runtime import LoadedModel

# Largest difference allowed between GPU and CPU outputs (float32, TF32 matmuls).
TOLERANCE = 1e-2
# Smallest cosine similarity to the reference embeddings.
MIN_COSINE = 0.999


class Checks:
    """Check results, printed as they come."""

    def __init__(self) -> None:
        self.results: list[dict[str, Any]] = []

    def add(self, name: str, ok: bool, detail: str) -> None:
        self.results.append({"check": name, "ok": ok, "detail": detail})
        print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)

    @property
    def ok(self) -> bool:
        return all(r["ok"] for r in self.results)


def compare_outputs(checks: Checks, gpu: LoadedModel, cpu: LoadedModel, rows: list[Any]) -> None:
    """The GPU session's outputs against the CPU session's on `rows`."""
    worst = 0.0
    for got, want in zip(gpu.run(rows), cpu.run(rows), strict=True):
        if np.issubdtype(np.asarray(want).dtype, np.number):
            diff = np.abs(np.asarray(got, dtype=np.float64) - np.asarray(want, dtype=np.float64))
            worst = max(worst, float(diff.max(initial=0.0)))
    checks.add(
        f"{gpu.name} outputs match CPU",
        worst <= TOLERANCE,
        f"largest difference {worst:.2e} over {len(rows)} rows (allowed {TOLERANCE})",
    )


def compare_reference(checks: Checks, model: LoadedModel, folder: Path) -> None:
    """MiniLM's embeddings on the GPU against sentence-transformers' (`reference.json`)."""
    path = folder / "reference.json"
    if not path.is_file():
        return
    reference = json.loads(path.read_text("utf-8"))
    sentences, expected = reference["sentences"], np.asarray(reference["embeddings"])
    got = np.asarray(model.run([{"text": s} for s in sentences])[0], dtype=np.float64)
    cosine = np.sum(got * expected, axis=1) / (
        np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1)
    )
    checks.add(
        f"{model.name} matches sentence-transformers",
        float(cosine.min()) >= MIN_COSINE,
        f"smallest cosine {float(cosine.min()):.6f} over {len(sentences)} sentences",
    )


def get(port: int, path: str) -> str:
    """The body of GET `path` from the server on 127.0.0.1:`port`."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        return connection.getresponse().read().decode()
    finally:
        connection.close()


def check_report(checks: Checks, models: list[LoadedModel]) -> dict[str, Any]:
    """The worker's /readyz and /metrics, served by its own HTTP server, name each
    model's provider."""
    registry = CollectorRegistry()
    readiness = Readiness()
    readiness.set(True, None, report_models(models, model_loaded_gauge(registry)))
    server = serve("127.0.0.1", 0, readiness, registry)
    try:
        body: dict[str, Any] = json.loads(get(server.server_address[1], "/readyz"))
        metrics = get(server.server_address[1], "/metrics")
    finally:
        server.shutdown()
    reported = {m["model"]: m["provider"] for m in body["models"]}
    for model in models:
        line = (
            f'inferfleet_worker_model_loaded{{model="{model.name}",'
            f'provider="{model.provider}",version="{model.version}"}} 1.0'
        )
        checks.add(
            f"{model.name} reported on the GPU",
            on_gpu(reported.get(model.name, CPU)) and line in metrics,
            f"/readyz says {reported.get(model.name)}; /metrics has {line!r}: {line in metrics}",
        )
    return body


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", type=Path, action="append", required=True)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    checks = Checks()
    print(
        f"onnxruntime {ort.__version__} from {Path(ort.__file__).parent}; built with "
        f"{', '.join(ort.get_available_providers())}; TensorRT libraries load: "
        f"{tensorrt_loadable()}",
        flush=True,
    )
    checks.add(
        "the CUDA provider is built in",
        "CUDAExecutionProvider" in ort.get_available_providers(),
        "onnxruntime-gpu is the one imported",
    )
    models = []
    for folder in args.package:
        gpu, _ = open_folder(folder, SessionConfig())
        cpu, manifest = open_folder(folder, SessionConfig(providers=[CPU]))
        models.append(gpu)
        checks.add(
            f"{gpu.name} session on the GPU",
            on_gpu(gpu.provider),
            f"runs on {gpu.session.get_providers()}; I/O binding: {gpu.bound_device}",
        )
        rows = requests_for(manifest, 256)
        compare_outputs(checks, gpu, cpu, rows)
        compare_reference(checks, gpu, folder)
    body = check_report(checks, models)
    if args.json is not None:
        report = {"ok": checks.ok, "checks": checks.results, "readyz": body}
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    sys.exit(0 if checks.ok else 1)


if __name__ == "__main__":
    main()
