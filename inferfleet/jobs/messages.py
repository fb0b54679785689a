"""The queue message of one job (API.md, "Queue messages"), version 1.

Key: the job ID. Value: JSON `{"v": 1, "job_id", "tenant", "model", "version",
"inputs" | "input_uri", "enqueued_at", "deadline", "request_id"}`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from inferfleet.clients.records import Record
from inferfleet.headers import TRACEPARENT

VERSION = 1
# Versions are Postgres integers; a larger number could not name a registered version.
MAX_VERSION = 2**31 - 1


class UndecodableMessageError(ValueError):
    """Raised when a record's value is not a version-1 job message."""


@dataclass(frozen=True)
class JobMessage:
    """One job as it travels through Kafka."""

    job_id: str
    tenant: str
    model: str
    version: int
    inputs: dict[str, Any] | None
    input_uri: str | None
    enqueued_at: datetime
    deadline: datetime | None
    request_id: str | None


def from_row(row: Mapping[str, Any]) -> JobMessage:
    """The message of a job row (the `jobs` columns by name): one rule for the API's
    submit, a batch's ingest and the sweep that produces what never left.

    A job sent by `input_uri` carries no inputs; it was enqueued when its row was made;
    a row without a `deadline` has none.
    """
    return JobMessage(
        job_id=row["id"],
        tenant=row["tenant"],
        model=row["model"],
        version=row["version"],
        inputs=row["inputs"] if row["input_uri"] is None else None,
        input_uri=row["input_uri"],
        enqueued_at=row["created_at"],
        deadline=row.get("deadline"),
        request_id=row["request_id"],
    )


def record(topic: str, row: Mapping[str, Any]) -> Record:
    """The record of a job row on `topic`: keyed by the job ID, its message as the value,
    and the job's trace context (`traceparent`) as a header when it has one."""
    traceparent = row.get("traceparent")
    headers = ((TRACEPARENT, traceparent.encode()),) if traceparent else ()
    return Record(topic=topic, key=row["id"].encode(), value=encode(from_row(row)), headers=headers)


def encode(msg: JobMessage) -> bytes:
    """The record value for `msg`."""
    body: dict[str, Any] = {
        "v": VERSION,
        "job_id": msg.job_id,
        "tenant": msg.tenant,
        "model": msg.model,
        "version": str(msg.version),
        "enqueued_at": msg.enqueued_at.isoformat(),
        "deadline": msg.deadline.isoformat() if msg.deadline else None,
        "request_id": msg.request_id,
    }
    if msg.input_uri is not None:
        body["input_uri"] = msg.input_uri
    else:
        body["inputs"] = msg.inputs
    return json.dumps(body, separators=(",", ":")).encode()


def decode(value: bytes | None) -> JobMessage:
    """Parse a record value; a value that is not a v1 job message raises UndecodableMessageError."""
    try:
        body = json.loads(value) if value is not None else None
        if not isinstance(body, dict):
            raise UndecodableMessageError(
                f"record value is not a JSON object: {(value or b'')[:80]!r}"
            )
        if body.get("v") != VERSION:
            raise UndecodableMessageError(f"unknown message version {body.get('v')!r}")
        inputs = body.get("inputs")
        input_uri = body.get("input_uri")
        if (inputs is None) == (input_uri is None):
            raise UndecodableMessageError("message needs exactly one of inputs and input_uri")
        job_id, tenant, model = (_text(body, name) for name in ("job_id", "tenant", "model"))
        version = body.get("version")
        if (
            isinstance(version, bool)
            or not (isinstance(version, int) or (isinstance(version, str) and version.isdigit()))
            or not 1 <= int(version) <= MAX_VERSION
        ):
            raise UndecodableMessageError(f"version must be a version number, got {version!r}")
        deadline = body.get("deadline")
        return JobMessage(
            job_id=job_id,
            tenant=tenant,
            model=model,
            version=int(version),
            inputs=inputs,
            input_uri=input_uri,
            enqueued_at=datetime.fromisoformat(body["enqueued_at"]),
            deadline=datetime.fromisoformat(deadline) if deadline else None,
            request_id=body.get("request_id"),
        )
    except UndecodableMessageError:
        raise
    except RecursionError as e:  # JSON nested past the parser's limit
        raise UndecodableMessageError("malformed job message: nested too deeply") from e
    except (ValueError, KeyError, TypeError) as e:
        raise UndecodableMessageError(f"malformed job message: {e!r}") from e


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value or "\x00" in value:
        # Postgres text holds no NUL: such an ID would fail every write of its batch.
        raise UndecodableMessageError(
            f"{name} must be a non-empty string without NUL, got {value[:80]!r}"
            if isinstance(value, str)
            else f"{name} must be a non-empty string, got {value!r}"
        )
    return value
