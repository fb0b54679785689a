"""OpenTelemetry traces: one trace per job, from its submit to its webhooks.

Off unless configured: a service exports spans only when the standard variables name
an OTLP endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
and `OTEL_TRACES_EXPORTER` is not `none`; the exporter (OTLP over HTTP) then reads the
rest of the `OTEL_*` variables itself (headers, timeout, `OTEL_SERVICE_NAME`,
`OTEL_RESOURCE_ATTRIBUTES`, the batch processor's `OTEL_BSP_*`). When off, `enabled()` is
false and callers skip building what only a span would use; the spans they still open
are OpenTelemetry's non-recording ones.

A job's context travels as its W3C `traceparent`: in its row (`jobs.traceparent`,
written at submit or ingest) and in its Kafka record's headers, from which the worker
continues the trace; the dispatcher continues it from the row and sends it on the
webhook POST.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanContext, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from inferfleet.headers import TRACEPARENT as TRACEPARENT  # callers name it as tracing.TRACEPARENT

log = logging.getLogger(__name__)

ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_PROPAGATOR = TraceContextTextMapPropagator()
_enabled = False


def configured(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the `OTEL_*` variables ask for traces to be exported."""
    if environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "otlp").lower() == "none":
        return False
    return any(environ.get(name) for name in ENDPOINTS)


def setup(service: str) -> bool:
    """Export this process's spans as `service` (unless `OTEL_SERVICE_NAME` says
    otherwise) if the variables ask for it; whether they do. Called once per process."""
    global _enabled
    if _enabled or not configured():
        return _enabled
    # Imported here: a process with tracing off never loads the SDK or the exporter.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = os.environ.get("OTEL_SERVICE_NAME") or service
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _enabled = True
    log.info("exporting traces as %s", name)
    return True


def enabled() -> bool:
    """Whether this process exports spans (`setup` found them asked for)."""
    return _enabled


def tracer(name: str) -> Tracer:
    return trace.get_tracer(name)


def current_traceparent() -> str | None:
    """The `traceparent` of the current span, or None when there is none to continue
    (always, at no cost, while this process exports no spans: only its SDK makes them)."""
    if not _enabled:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get(TRACEPARENT)


def context_of(traceparent: str | None) -> Context | None:
    """The context a `traceparent` names, to start a span under; None without one."""
    if not traceparent:
        return None
    return _PROPAGATOR.extract({TRACEPARENT: traceparent})


def span_context_of(traceparent: str | None) -> SpanContext | None:
    """The span a `traceparent` names, to link to; None without a valid one."""
    context = context_of(traceparent)
    if context is None:
        return None
    found = trace.get_current_span(context).get_span_context()
    return found if found.is_valid else None


def links(traceparents: list[str | None]) -> list[Link]:
    """Links to each distinct span named (a batch's span to the jobs it served)."""
    seen: dict[tuple[int, int], Link] = {}
    for parent in traceparents:
        found = span_context_of(parent)
        if found is not None:
            seen.setdefault((found.trace_id, found.span_id), Link(found))
    return list(seen.values())


def header_value(headers: list[tuple[str, bytes]] | None) -> str | None:
    """The `traceparent` among a Kafka record's headers, or None."""
    for key, value in headers or ():
        if key == TRACEPARENT:
            return value.decode("ascii", "replace")
    return None
