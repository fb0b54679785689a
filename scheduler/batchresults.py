"""A batch's results file (API.md, "Batches"), written a line at a time.

`results.jsonl` under the batch's output prefix has one line per input line, in input
order: `{"custom_id", "job_id", "status", "outputs"}` for a succeeded job (outputs
stored in S3 because they were large are named by `output_uri` instead), `{"custom_id",
"job_id", "status", "error"}` for a failed, cancelled or expired one, and status
`invalid` (no job) for a line skipped because it failed validation.

Lines are rendered from an iterator of job rows in line order and uploaded as they are
rendered (`upload_lines`), so neither the rows nor the file are ever held whole.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Protocol

from boto3.s3.transfer import TransferConfig

from inferfleet.clients.objectstore import split_uri

RESULTS_FILE = "results.jsonl"
# Parts of the multipart upload. s3transfer reads a stream ahead of the parts in flight
# up to `max_in_memory_upload_chunks` parts (10 by default: 80 MiB); with 2, an upload
# holds about three parts (24 MiB) however long the file.
PART_BYTES = 8 * 1024 * 1024
UPLOAD = TransferConfig(
    multipart_threshold=PART_BYTES, multipart_chunksize=PART_BYTES, max_concurrency=2
)
UPLOAD.max_in_memory_upload_chunks = 2  # an s3transfer setting boto3's __init__ lacks


class JobResult(Protocol):
    """The columns of a job row that its results line needs."""

    @property
    def line(self) -> int: ...
    @property
    def id(self) -> str: ...
    @property
    def custom_id(self) -> str | None: ...
    @property
    def status(self) -> str: ...
    @property
    def outputs(self) -> Any: ...
    @property
    def output_uri(self) -> str | None: ...
    @property
    def error(self) -> Any: ...


def results_uri(output_prefix: str) -> str:
    """Where the results file of a batch writing under `output_prefix` goes."""
    return output_prefix.rstrip("/") + "/" + RESULTS_FILE


def _encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def result_line(job: JobResult) -> bytes:
    """The results line of a job that ended."""
    body: dict[str, Any] = {"custom_id": job.custom_id, "job_id": job.id, "status": job.status}
    if job.status == "succeeded":
        body["outputs"] = job.outputs
        if job.outputs is None and job.output_uri is not None:
            body["output_uri"] = job.output_uri
    else:
        body["error"] = job.error or {"type": job.status, "message": f"the job was {job.status}"}
    return _encode(body)


def invalid_line(number: int, entry: Mapping[str, Any] | None) -> bytes:
    """The results line of input line `number`, skipped as invalid; `entry` is its
    `invalid_lines` entry, None when the batch kept no details of it."""
    if entry is None:
        error = {
            "type": "invalid_input",
            "message": f"line {number} is invalid; the batch keeps the details of its "
            "first invalid lines only",
        }
        return _encode({"custom_id": None, "job_id": None, "status": "invalid", "error": error})
    error = {
        "type": "invalid_input",
        "message": f"line {number} is invalid",
        "errors": entry["errors"],
    }
    return _encode(
        {"custom_id": entry.get("custom_id"), "job_id": None, "status": "invalid", "error": error}
    )


def results_lines(
    total: int, jobs: Iterable[JobResult], invalid: Mapping[int, Mapping[str, Any]]
) -> Iterator[bytes]:
    """Every line of the results file of a batch of `total` input lines.

    `jobs` must come in line order. Lines no job holds were skipped as invalid; `invalid`
    has the entries the batch kept of them, by line.
    """
    expected = 1
    for job in jobs:
        while expected < job.line:
            yield invalid_line(expected, invalid.get(expected))
            expected += 1
        yield result_line(job)
        expected = job.line + 1
    while expected <= total:
        yield invalid_line(expected, invalid.get(expected))
        expected += 1


class _Chunks(io.RawIOBase):
    """A readable raw stream over an iterator of byte strings."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._left = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(view):
            if not self._left:
                chunk = next(self._chunks, None)
                if chunk is None:
                    break
                self._left = memoryview(chunk)
                continue
            take = min(len(view) - filled, len(self._left))
            view[filled : filled + take] = self._left[:take]
            self._left = self._left[take:]
            filled += take
        return filled


def stream(chunks: Iterable[bytes]) -> io.BufferedReader:
    """A file object whose bytes are `chunks`, concatenated, read as they are needed."""
    return io.BufferedReader(_Chunks(chunks), buffer_size=1024 * 1024)


def upload_lines(s3: Any, uri: str, lines: Iterable[bytes], content_type: str) -> None:
    """Write `lines` as the object at `uri`, streaming them through a multipart upload.

    The object appears whole or not at all: S3 shows a multipart upload only once it is
    completed, and boto3 aborts it when `lines` raises.
    """
    bucket, key = split_uri(uri)
    s3.upload_fileobj(
        stream(lines), bucket, key, ExtraArgs={"ContentType": content_type}, Config=UPLOAD
    )
