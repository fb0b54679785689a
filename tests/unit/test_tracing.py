"""The trace context's rules without a collector: when tracing is on, and how a
`traceparent` travels through a job's record and a batch's links."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from inferfleet import tracing
from inferfleet.jobs import messages

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
OTHER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_SERVICE_NAME": "x"}, False),  # nowhere to send spans
    ],
)
def test_traces_are_exported_only_when_an_endpoint_is_named(
    environ: dict[str, str], expected: bool
) -> None:
    assert tracing.configured(environ) is expected


def test_a_job_s_record_carries_its_traceparent_and_only_then() -> None:
    row = {
        "id": "job_1",
        "tenant": "t",
        "model": "fraud",
        "version": 1,
        "inputs": {"x": 1},
        "input_uri": None,
        "created_at": datetime(2026, 12, 4, tzinfo=UTC),
        "request_id": "req_1",
    }
    assert messages.record("topic", row).headers == ()
    traced = messages.record("topic", {**row, "traceparent": PARENT})
    assert traced.headers == (("traceparent", PARENT.encode()),)
    assert tracing.header_value(list(traced.headers)) == PARENT
    assert tracing.header_value([("other", b"x")]) is None
    assert tracing.header_value(None) is None


def test_a_batch_links_each_distinct_job_span_once_and_skips_what_is_no_context() -> None:
    found = tracing.links([PARENT, OTHER, PARENT, None, "garbage"])
    assert [format(link.context.trace_id, "032x") for link in found] == [
        "0af7651916cd43dd8448eb211c80319c",
        "4bf92f3577b34da6a3ce929d0e0e4736",
    ]
    assert tracing.context_of(None) is None
    assert tracing.span_context_of("garbage") is None


def test_without_a_span_there_is_no_traceparent_to_continue() -> None:
    assert tracing.current_traceparent() is None
