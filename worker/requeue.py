"""What a batch sends back to Kafka before its offsets are committed: jobs to try again
(onto their own topic), and final failures and undecodable records copied to the
topic's dead-letter topic with the reason in the `inferfleet-error` header."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

from inferfleet import tracing
from inferfleet.clients.broker import Record
from inferfleet.clients.topics import dlq_topic, job_topic
from inferfleet.jobs import messages
from inferfleet.jobs.messages import JobMessage
from worker import logs
from worker.batching import Outcome, Poison

log = logging.getLogger(__name__)

ERROR_HEADER = "inferfleet-error"


def resend(
    records: Sequence[Any],
    runnable: Sequence[JobMessage],
    final: Sequence[Outcome],
    retry: Sequence[str],
) -> tuple[list[Record], list[Record]]:
    """(retries back onto their topic, final failures copied to its DLQ with the error).

    Each carries its job's record value as polled (a message that was decoded once is
    never encoded again, however its inputs nest); a job without a keyed record gets
    its message encoded afresh.
    """
    by_id = {j.job_id: j for j in runnable}
    topic, value, headers = _as_polled(records)
    retries = [
        Record(topic(by_id[i]), i.encode(), value(by_id[i]), headers(by_id[i])) for i in retry
    ]
    for i in retry:
        log.info("attempt failed; requeued to run again", extra=logs.job_fields(by_id[i]))
    copies = []
    for o in final:
        if o.error is not None:
            job = by_id[o.job_id]
            log.warning(
                "failed for good; dead-lettered: %s",
                o.error["message"],
                extra=logs.job_fields(job),
            )
            copies.append(
                Record(
                    dlq_topic(topic(job)),
                    job.job_id.encode(),
                    value(job),
                    headers=((ERROR_HEADER, json.dumps(o.error).encode()), *headers(job)),
                )
            )
    return retries, copies


def put_back(records: Sequence[Any], waiting: Sequence[JobMessage]) -> list[Record]:
    """Jobs waiting for their version, back at the end of their topic as they were
    polled; no attempt is counted, since none was made."""
    topic, value, headers = _as_polled(records)
    return [Record(topic(job), job.job_id.encode(), value(job), headers(job)) for job in waiting]


Headers = tuple[tuple[str, bytes], ...]


def _as_polled(
    records: Sequence[Any],
) -> tuple[
    Callable[[JobMessage], str], Callable[[JobMessage], bytes], Callable[[JobMessage], Headers]
]:
    """The topic, record value and trace context each job was polled with."""
    # Job messages are keyed by job ID, so a record's key names its job; first copy wins.
    record_of = {r.key.decode(errors="replace"): r for r in reversed(records) if r.key}

    def topic(job: JobMessage) -> str:
        record = record_of.get(job.job_id)
        return str(record.topic) if record is not None else job_topic(job.model)

    def value(job: JobMessage) -> bytes:
        record = record_of.get(job.job_id)
        return bytes(record.value) if record is not None else messages.encode(job)

    def headers(job: JobMessage) -> Headers:
        record = record_of.get(job.job_id)
        parent = tracing.header_value(record.headers) if record is not None else None
        return ((tracing.TRACEPARENT, parent.encode()),) if parent else ()

    return topic, value, headers


def dead_letters(poison: Sequence[Poison]) -> list[Record]:
    """Undecodable records, copied to their topic's DLQ with why."""
    return [
        Record(
            dlq_topic(p.topic),
            p.key or b"",
            p.value or b"",
            headers=((ERROR_HEADER, p.error.encode()),),
        )
        for p in poison
    ]
