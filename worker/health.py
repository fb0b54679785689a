"""The worker's HTTP endpoints, `/healthz`, `/readyz` and `/metrics`, on their own port,
and what they say about the loaded models.

A plain threaded HTTP server: the worker's loop owns the process, and probes must answer
while a batch runs. Each loaded model is reported with the execution provider its
session actually runs on (`LoadedModel.provider`, the session's first), in `/readyz`
and in `inferfleet_worker_model_loaded` alike (`report_models`).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

log = logging.getLogger(__name__)


class Served(Protocol):
    """A loaded model as the probes report it (`worker.runtime.LoadedModel`)."""

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def provider(self) -> str: ...


def model_loaded_gauge(registry: CollectorRegistry) -> Gauge:
    """`inferfleet_worker_model_loaded{model,version,provider}`, in `registry`."""
    return Gauge(
        "inferfleet_worker_model_loaded",
        "1 for each model version loaded, labelled with the execution provider its "
        "session runs on.",
        ["model", "version", "provider"],
        registry=registry,
    )


def report_models(models: Iterable[Served], gauge: Gauge) -> list[dict[str, Any]]:
    """Set `gauge` to exactly the loaded `models`, and return their `/readyz` entries
    (model, version, provider), sorted by model and version."""
    ordered = sorted(models, key=lambda m: (m.name, m.version))
    gauge.clear()
    for m in ordered:
        gauge.labels(m.name, str(m.version), m.provider).set(1)
    return [{"model": m.name, "version": str(m.version), "provider": m.provider} for m in ordered]


class Readiness:
    """What `/readyz` reports; the worker's loop updates it, probe threads read it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ready = False
        self._body: dict[str, Any] = {"status": "not_ready", "reason": "starting", "models": []}

    def set(self, ready: bool, reason: str | None, models: list[dict[str, Any]]) -> None:
        with self._lock:
            self._ready = ready
            self._body = {
                "status": "ready" if ready else "not_ready",
                "reason": reason,
                "models": models,
            }

    def get(self) -> tuple[bool, dict[str, Any]]:
        with self._lock:
            return self._ready, dict(self._body)


def serve(
    host: str, port: int, readiness: Readiness, registry: CollectorRegistry
) -> ThreadingHTTPServer:
    """Start serving in a daemon thread; port 0 picks a free port (see `server_address`)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/healthz":
                self._send(200, "application/json", b'{"status": "ok"}')
            elif self.path == "/readyz":
                ready, body = readiness.get()
                self._send(200 if ready else 503, "application/json", json.dumps(body).encode())
            elif self.path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(registry))
            else:
                self._send(404, "application/json", b'{"status": 404}')

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return  # probes every few seconds would drown the worker's own log lines

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="worker-http", daemon=True).start()
    log.info("worker http listening on %s:%d", *server.server_address[:2])
    return server
