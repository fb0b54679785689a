"""Worker log lines: a job's fixed context fields, rendered as `name=value`.

A line about one job passes `extra=job_fields(job)`; `ContextFilter`, on the handler
`configure` installs, renders the context fields a record carries in front of its
message:

    2024-09-17 ... WARNING worker.main job_id=job_01J… request_id=req_5f… model=fraud
    version=3 expired before it started

`request_id` is the `X-Request-ID` the API answered the submit with (the client's, if it
sent one), carried in the job's queue message, so one grep follows a request from the
API's logs into the worker's. Lines about a whole batch carry no job fields: a batch
holds thousands of jobs, so per-job lines are kept to failures, retries, dead letters
and expiries.
"""

from __future__ import annotations

import logging

from inferfleet.jobs.messages import JobMessage

FIELDS = ("job_id", "request_id", "model", "version")
FORMAT = "%(asctime)s %(levelname)s %(name)s %(context)s%(message)s"


def job_fields(job: JobMessage) -> dict[str, object]:
    """The context fields of a line about `job`, for `extra=`."""
    return {
        "job_id": job.job_id,
        "request_id": job.request_id or "-",
        "model": job.model,
        "version": job.version,
    }


class ContextFilter(logging.Filter):
    """Sets `record.context` to the record's context fields as `name=value ` pairs."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.context = "".join(
            f"{name}={getattr(record, name)} " for name in FIELDS if hasattr(record, name)
        )
        return True


def configure(level: int = logging.INFO) -> None:
    """Log to stderr with `FORMAT`, context fields included."""
    handler = logging.StreamHandler()
    handler.addFilter(ContextFilter())
    handler.setFormatter(logging.Formatter(FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
