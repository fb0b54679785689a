"""What tracing costs the worker: the same backlog run by `python -m worker` with
tracing off, then on (every message carrying a trace context, spans exported over
OTLP/HTTP to a sink this bench runs on 127.0.0.1), side by side in one run.

    .venv/bin/python bench/tracing.py [--jobs 100000] [--batch 2000]

Prints jobs/s of each run, their ratio and the spans the sink received. Figures are for
reading, never for asserting.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.worker_process import REPO, free_port, run_worker, worker_group
from bench.workload import Job, make_jobs, publish_fresh, remove
from inferfleet.clients.db import make_engine
from inferfleet.clients.objectstore import make_s3_client
from inferfleet.settings import load_settings


class Sink:
    """An OTLP/HTTP trace receiver that only counts the spans it is sent."""

    def __init__(self) -> None:
        self.port = free_port()
        self.spans = 0
        lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                request = ExportTraceServiceRequest()
                request.ParseFromString(self.rfile.read(int(self.headers["content-length"])))
                count = sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
                with lock:
                    sink.spans += count
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()


def traced(jobs: list[Job]) -> list[Job]:
    """The jobs, each with a trace context of its own, as the API would give them."""
    return [
        Job(j.id, j.inputs, f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01") for j in jobs
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=2_000)
    parser.add_argument("--package", type=Path, default=REPO / "build" / "models" / "fraud")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="inferfleet-bench-tracing-") as tmp_name:
        tmp = Path(tmp_name)
        settings = load_settings(model_cache_dir=tmp / "publish-cache")
        engine = make_engine(settings, pool_size=2)
        s3 = make_s3_client(settings)
        sink = Sink()
        env = {
            "INFERFLEET_MODEL_CACHE_DIR": str(tmp / "worker-cache"),
            "INFERFLEET_POLL_MAX_RECORDS": str(args.batch),
        }
        on = {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{sink.port}/v1/traces",
            # The SDK's default queue (2,048 spans) would drop most of a 2,000-record
            # batch's queue spans; a run that drops spans costs less than one that
            # exports them all.
            "OTEL_BSP_MAX_QUEUE_SIZE": str(8 * args.batch),
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "2048",
        }
        rates: dict[str, float] = {}
        made = []
        try:
            for name, extra in (("off", {}), ("on", on)):
                version = publish_fresh(settings, engine, s3, args.package)  # its own topic
                made.append(version)
                backlog = make_jobs(version.request_schema, args.jobs, seed=1)
                if extra:
                    backlog = traced(backlog)
                log = tmp / f"worker-{name}.log"
                run = run_worker(
                    settings, engine, version, backlog, f"tracing-{name}", env | extra, log, True
                )
                rates[name] = run.completion.rate(len(backlog))
                print(f"tracing {name}: {rates[name]:,.0f} jobs/s", flush=True)
        finally:
            sink.close()
            for version in made:
                remove(settings, engine, s3, version, worker_group(version))
            engine.dispose()
        print()
        print("| worker, jobs already on Kafka | jobs/s |")
        print("| --- | --- |")
        print(f"| tracing off | {rates['off']:,.0f} |")
        print(f"| tracing on, every job traced, spans exported | {rates['on']:,.0f} |")
        print(f"| on / off | {rates['on'] / rates['off']:.2f} |")
        print(f"\nspans received: {sink.spans:,} for {args.jobs:,} jobs")


if __name__ == "__main__":
    main()
