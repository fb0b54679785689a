"""The objects the system writes for a job: the claim check of its inputs, its large
outputs. Both live under prefixes no tenant may name.

The claim check: a job's inputs too large for its message go to S3 first.
Inputs whose compact JSON passes `claim_check_bytes` are written to
`s3://<bucket>/claims/<job_id>.json` (a prefix no tenant may name) before any row or
message names them, and the job travels with that `input_uri` instead: no message
outgrows the broker's limit. The worker reads a claim back like a client's own
`input_uri`; a job may always read its own claim (`inferfleet.tenants.uris`).
"""

from __future__ import annotations

import json
from typing import Any

from inferfleet.settings import Settings

# Where inputs too large for a message go: a prefix no tenant may name.
CLAIM_PREFIX = "claims"
# Where outputs too large for a row go.
RESULTS_PREFIX = "results"


def claim_uri(bucket: str, job_id: str) -> str:
    """Where a job's inputs too large for its message are written (the claim check)."""
    return f"s3://{bucket}/{CLAIM_PREFIX}/{job_id}.json"


def claim(settings: Settings, job_id: str, inputs: dict[str, Any]) -> tuple[str, bytes] | None:
    """The object (URI and bytes) to write for `inputs` too large for a message, or None
    when they travel inline."""
    data = json.dumps(inputs, separators=(",", ":")).encode()
    if len(data) <= settings.claim_check_bytes:
        return None
    return claim_uri(settings.s3_bucket, job_id), data


def result_uri(bucket: str, tenant: str, job_id: str) -> str:
    """Where a job's outputs too large for its row are written."""
    return f"s3://{bucket}/{RESULTS_PREFIX}/{tenant}/{job_id}.json"
