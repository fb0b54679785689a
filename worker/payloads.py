"""Inputs and outputs that travel through S3 instead of Kafka and Postgres.

A job submitted with `input_uri`, or moved to S3 by the API's claim check, is read back
before preprocessing; a few objects are read at once. Outputs above
`output_inline_bytes` are written to `results/<tenant>/<job_id>.json` before the results
transaction stores their `output_uri`, so a stored `output_uri` always names an object
(an object orphaned by a crash is harmless; it is rewritten when the redelivered job
runs again).

A URI outside the job's tenant's prefixes (other than the job's own claim check) is
not read: its job fails `forbidden_input`. An object that is missing, unreadable for
this worker, larger than `MAX_INPUT_BYTES`, nested deeper than
`inferfleet.jsondepth.MAX_DEPTH`, not a JSON object or not valid against the version's
request schema fails its job alone, at once; so do inline inputs nested too deeply.
Anything else one job's read, parse or check raises fails that job alone too
(`worker.isolation`), as does one job's outputs failing to encode. An object store or
database outage raises, and the caller retries the whole batch later.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from botocore.exceptions import ClientError
from sqlalchemy import Engine

from inferfleet import jsondepth
from inferfleet.clients.objectstore import is_missing, put_all, split_uri
from inferfleet.errors import NotFoundError
from inferfleet.jobs.claims import result_uri
from inferfleet.jobs.messages import JobMessage
from inferfleet.models import registry
from inferfleet.models.validation import validate_instance, validator_for
from inferfleet.settings import Settings
from inferfleet.tenants.uris import job_input_uri
from worker.batching import Outcome
from worker.isolation import TRANSIENT, unexpected

THREADS = 8
# An input object larger than this fails its job unread.
MAX_INPUT_BYTES = 16 * 1024 * 1024
# Errors that say this one object cannot be read, whatever the object store's health.
UNREADABLE = frozenset({"AccessDenied", "InvalidObjectState", "NoSuchBucket"})


def parse_input(uri: str, data: bytes, schema: dict[str, Any]) -> dict[str, Any] | str:
    """The instance in `data`, or why it cannot run (its job fails `invalid_input`)."""
    try:
        instance = jsondepth.loads(data)
    except jsondepth.TooDeepError as e:
        return f"{uri} is {e}; inputs may nest at most {e.limit}"
    except ValueError as e:  # bad UTF-8 too
        return f"{uri} is not JSON: {e}"
    if not isinstance(instance, dict):
        return f"{uri} holds a JSON {type(instance).__name__}, not an object"
    problems = validate_instance(validator_for(schema), instance, ())
    if problems:
        listed = "; ".join(f"{'.'.join(map(str, p.loc)) or '(root)'}: {p.msg}" for p in problems)
        return f"{uri} breaks the request schema: {listed}"
    return instance


def too_deep(job: JobMessage) -> Outcome | None:
    """The failure of a job whose inline inputs nest deeper than the API accepts (a
    message the API did not write), or None."""
    limit = jsondepth.MAX_DEPTH
    if job.inputs is None or jsondepth.too_deep(job.inputs, limit) is None:
        return None
    return _failed(job, "invalid_input", f"inputs nest deeper than {limit} levels")


class Payloads:
    """Reads a batch's S3 inputs and writes its large outputs (one per worker)."""

    def __init__(self, settings: Settings, engine: Engine, s3: Any) -> None:
        self._settings = settings
        self._engine = engine
        self._s3 = s3
        self._schemas: dict[tuple[str, int], dict[str, Any]] = {}  # versions never change

    def fetch_inputs(self, jobs: Sequence[JobMessage]) -> tuple[list[JobMessage], list[Outcome]]:
        """`jobs` ready to run (each `input_uri` read into `inputs`), and a failed
        outcome for each job whose inputs cannot run.

        Ready jobs keep their `input_uri`, so a message written again from them (a retry,
        a dead letter) still carries the reference, not the inputs.
        """
        failed = {j.job_id: o for j in jobs if (o := too_deep(j)) is not None}
        by_uri = [j for j in jobs if j.input_uri is not None]
        read: dict[str, JobMessage | Outcome] = {}
        if by_uri:
            schemas = self._request_schemas({(j.model, j.version) for j in by_uri})

            def read_one(job: JobMessage) -> JobMessage | Outcome:
                try:
                    return self._read(job, schemas.get((job.model, job.version)))
                except TRANSIENT:
                    raise
                except Exception as e:  # noqa: BLE001 - one object's failure is its job's
                    return unexpected(
                        job.job_id, "input_unavailable", f"reading {job.input_uri}", e
                    )

            threads = min(THREADS, len(by_uri))
            with ThreadPoolExecutor(threads, thread_name_prefix="input") as pool:
                read = dict(
                    zip((j.job_id for j in by_uri), pool.map(read_one, by_uri), strict=True)
                )
        ready = [failed.get(j.job_id) or read.get(j.job_id, j) for j in jobs]
        return (
            [j for j in ready if isinstance(j, JobMessage)],
            [o for o in ready if isinstance(o, Outcome)],
        )

    def _request_schemas(
        self, versions: set[tuple[str, int]]
    ) -> dict[tuple[str, int], dict[str, Any]]:
        """The request schema of each of `versions` the registry holds."""
        missing = versions - self._schemas.keys()
        if missing:
            with self._engine.connect() as conn:
                for name, version in missing:
                    try:
                        found = registry.get_version(conn, name, version)
                    except NotFoundError:
                        continue
                    self._schemas[(name, version)] = found.request_schema
        return {v: self._schemas[v] for v in versions if v in self._schemas}

    def _read(self, job: JobMessage, schema: dict[str, Any] | None) -> JobMessage | Outcome:
        """`job` with its object as `inputs`, or its final failure."""
        sent = job.input_uri or ""
        settings = self._settings
        # The API checked the URI; a message it did not write is checked here again.
        uri = job_input_uri(
            sent, settings.tenant_prefixes, settings.s3_bucket, job.tenant, job.job_id
        )
        if uri is None:
            message = (
                f"{sent} is not under the S3 prefixes of tenant {job.tenant!r}; "
                "the worker does not read it"
            )
            return _failed(job, "forbidden_input", message)
        if schema is None:
            message = f"{job.model} v{job.version} is not in the registry"
            return _failed(job, "model_unavailable", message)
        try:
            bucket, key = split_uri(uri)
            answer = self._s3.get_object(Bucket=bucket, Key=key)
        except ValueError as e:
            return _failed(job, "input_unavailable", str(e))
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if not (is_missing(e) or code in UNREADABLE):
                raise  # throttling, outages: the batch is tried again later
            message = f"{uri} cannot be read ({code}); upload it, then submit the job again"
            return _failed(job, "input_unavailable", message)
        body = answer["Body"]
        try:
            size = answer.get("ContentLength", 0)
            if size <= MAX_INPUT_BYTES:  # the length S3 announced, checked against the bytes
                data = body.read(MAX_INPUT_BYTES + 1)
                size = max(size, len(data))
        finally:
            body.close()
        if size > MAX_INPUT_BYTES:
            message = f"{uri} is {size} bytes; input objects are at most {MAX_INPUT_BYTES} bytes"
            return _failed(job, "invalid_input", message)
        parsed = parse_input(uri, data, schema)
        if isinstance(parsed, str):
            return _failed(job, "invalid_input", parsed)
        return replace(job, inputs=parsed)

    def store_outputs(
        self, outcomes: Sequence[Outcome], jobs: Sequence[JobMessage]
    ) -> list[Outcome]:
        """`outcomes` with outputs above `output_inline_bytes` moved to S3.

        Each such object is written before this returns; its outcome then carries the
        object's `output_uri` instead of the outputs.
        """
        tenant_of = {j.job_id: j.tenant for j in jobs}
        large: dict[str, tuple[str, bytes]] = {}
        unencodable: dict[str, Outcome] = {}
        for outcome in outcomes:
            if outcome.outputs is None:
                continue
            try:
                data = json.dumps(outcome.outputs, separators=(",", ":"), allow_nan=False)
            except ValueError:
                continue  # NaN or infinity: the results transaction fails the job
            except Exception as e:  # noqa: BLE001 - one job's outputs fail that job alone
                failure = unexpected(outcome.job_id, "invalid_output", "encoding the outputs", e)
                unencodable[outcome.job_id] = failure
                continue
            if len(data.encode()) > self._settings.output_inline_bytes:
                uri = result_uri(
                    self._settings.s3_bucket, tenant_of[outcome.job_id], outcome.job_id
                )
                large[outcome.job_id] = (uri, data.encode())
        outcomes = [unencodable.get(o.job_id, o) for o in outcomes]
        if not large:
            return outcomes
        put_all(self._s3, list(large.values()), "output")
        return [
            replace(o, outputs=None, output_uri=large[o.job_id][0]) if o.job_id in large else o
            for o in outcomes
        ]


def _failed(job: JobMessage, kind: str, message: str) -> Outcome:
    return Outcome(job.job_id, error={"type": kind, "message": message}, retriable=False)
