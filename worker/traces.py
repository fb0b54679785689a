"""The worker's spans (`inferfleet.tracing`): each job's time on the queue, continuing
its submit's trace, and one span per batch, linked to the jobs it served, with its
claim, inference and persist steps below it.

With tracing off, none of this builds anything: `batch` and `step` are empty contexts.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from inferfleet import tracing

TRACER = tracing.tracer(__name__)


@contextmanager
def batch(records: Sequence[Any]) -> Iterator[None]:
    """Around the handling of one poll's `records`."""
    if not tracing.enabled():
        yield
        return
    parents = [tracing.header_value(r.headers) for r in records]
    for record, parent in zip(records, parents, strict=True):
        _on_the_queue(record, parent)
    with TRACER.start_as_current_span(
        "inferfleet.worker.batch",
        links=tracing.links(parents),
        attributes={"inferfleet.records": len(records)},
    ):
        yield


def step(name: str) -> AbstractContextManager[Any]:
    """A step of the current batch (`claim`, `inference`, `persist`)."""
    if not tracing.enabled():
        return nullcontext()
    return TRACER.start_as_current_span(f"inferfleet.worker.{name}")


def _on_the_queue(record: Any, parent: str | None) -> None:
    """The job's wait, from its record's broker timestamp to now, under its submit."""
    context = tracing.context_of(parent)
    if context is None:
        return
    key = record.key.decode(errors="replace") if record.key else ""
    span = TRACER.start_span(
        "inferfleet.queue",
        context=context,
        start_time=int(record.timestamp) * 1_000_000,  # ms -> ns
        attributes={"inferfleet.job_id": key, "messaging.destination.name": record.topic},
    )
    span.end()
