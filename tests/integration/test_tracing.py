"""One trace per job across real processes: the API (`python -m api`), a worker
(`python -m worker`) and the scheduler's dispatcher (`python -m scheduler worker -B`)
export their spans over OTLP/HTTP to a receiver this test runs on 127.0.0.1, and the
job's trace holds its submit, its time on the queue and its webhook delivery, whose POST
carries the trace's `traceparent`; the worker's batch span links to the job.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from sqlalchemy import Engine

from inferfleet.tenants import keys
from tests.integration.conftest import (
    PublishModel,
    bearer,
    eventually,
    free_port,
    serve_process,
    start_scheduler,
)
from tests.integration.receiver import Receiver
from tests.integration.test_jobs import random_inputs


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    links: tuple[tuple[str, str], ...]
    attributes: dict[str, Any]


@dataclass
class Collector:
    """An OTLP/HTTP trace receiver: every span exported to it, by any process."""

    port: int
    spans: list[Span] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/traces"

    def take(self, body: bytes) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        found = []
        for resource_spans in request.resource_spans:
            service = next(
                (
                    a.value.string_value
                    for a in resource_spans.resource.attributes
                    if a.key == "service.name"
                ),
                "",
            )
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    attributes = {a.key: _value(a.value) for a in s.attributes}
                    links = tuple((link.trace_id.hex(), link.span_id.hex()) for link in s.links)
                    found.append(
                        Span(
                            service,
                            s.name,
                            s.trace_id.hex(),
                            s.span_id.hex(),
                            s.parent_span_id.hex(),
                            links,
                            attributes,
                        )
                    )
        with self._lock:
            self.spans.extend(found)

    def snapshot(self) -> list[Span]:
        with self._lock:
            return list(self.spans)


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@pytest.fixture
def collector() -> Iterator[Collector]:
    found = Collector(free_port())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            found.take(body)
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", found.port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield found
    server.shutdown()
    server.server_close()


def otel_env(collector: Collector) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": collector.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "200",  # export within a fraction of a second
    }


@pytest.fixture
def api(tmp_path: Path, collector: Collector, kafka: str) -> Iterator[str]:
    """`python -m api` on a free port, exporting its spans."""
    env = {"INFERFLEET_WEBHOOK_ALLOWLIST": "127.0.0.1", **otel_env(collector)}
    for served in serve_process(tmp_path / "api.log", env):
        yield served.url


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver(free_port())
    found.start()
    yield found
    found.stop()


def test_one_trace_runs_from_the_submit_through_the_queue_to_the_webhook(
    api: str,
    collector: Collector,
    receiver: Receiver,
    publish_model: PublishModel,
    start_worker: Any,
    engine: Engine,
    tmp_path: Path,
) -> None:
    model = publish_model()
    worker = start_worker(model.name, **otel_env(collector))
    dispatcher = start_scheduler(
        tmp_path,
        "tracing",
        {
            "INFERFLEET_REDIS_URL": "redis://127.0.0.1:6379/9",
            "INFERFLEET_WEBHOOK_ALLOWLIST": "127.0.0.1",
            "INFERFLEET_DISPATCH_INTERVAL_S": "0.2",
            **otel_env(collector),
        },
    )
    try:
        tenant = f"trace-{os.urandom(4).hex()}"
        with engine.begin() as conn:
            key = keys.create_key(conn, tenant, "jobs").key
        body = {
            "model": model.name,
            "inputs": random_inputs(1, 31)[0],
            "webhook": {"url": receiver.url},
        }
        answer = httpx.post(f"{api}/v1/jobs", json=body, headers=bearer(key), timeout=60)
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["id"]

        eventually(lambda: receiver.snapshot(), "the job's webhook", 120)
        [hook] = receiver.snapshot()
        submit = eventually(
            lambda: next(
                (
                    s
                    for s in collector.snapshot()
                    if s.name == "inferfleet.submit"
                    and s.attributes.get("inferfleet.job_id") == job_id
                ),
                None,
            ),
            "the submit's span",
            30,
        )
        trace_id = submit.trace_id

        def whole() -> dict[str, Span] | None:
            mine = {s.name: s for s in collector.snapshot() if s.trace_id == trace_id}
            wanted = {"inferfleet.submit", "inferfleet.queue", "inferfleet.webhook"}
            return mine if wanted <= set(mine) else None

        trace = eventually(whole, "the job's spans from every process", 60)
        assert submit.service == "inferfleet-api"
        assert trace["inferfleet.queue"].service == "inferfleet-worker"
        assert trace["inferfleet.queue"].parent_id == submit.span_id
        assert trace["inferfleet.queue"].attributes["inferfleet.job_id"] == job_id
        webhook = trace["inferfleet.webhook"]
        assert webhook.service == "inferfleet-scheduler"
        assert webhook.parent_id == submit.span_id
        # The receiver can continue the same trace, from the webhook's own span.
        version, sent_trace, sent_parent, flags = hook.headers["traceparent"].split("-")
        assert (version, sent_trace, sent_parent) == ("00", trace_id, webhook.span_id)
        assert int(flags, 16) & 1  # sampled
        batches = [
            s
            for s in collector.snapshot()
            if s.name == "inferfleet.worker.batch" and (trace_id, submit.span_id) in s.links
        ]
        assert len(batches) == 1
        steps = {
            s.name
            for s in collector.snapshot()
            if s.trace_id == batches[0].trace_id and s.parent_id == batches[0].span_id
        }
        assert {
            "inferfleet.worker.claim",
            "inferfleet.worker.inference",
            "inferfleet.worker.persist",
        } <= steps
    finally:
        dispatcher.stop()
        worker.proc.terminate()
