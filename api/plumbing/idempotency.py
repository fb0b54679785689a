"""Idempotency keys: the same key with an equal body within 24 h returns the first job.

A key is bound in the same transaction that inserts the job's row, so of concurrent
duplicates exactly one creates a job and the others find it. A submit that is refused
(422, 503, …) leaves the key unbound.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text

TTL = "24 hours"

LIVE = text(
    f"""
    SELECT request_hash, job_id FROM idempotency_keys
     WHERE tenant = :tenant AND key = :key AND created_at > now() - interval '{TTL}'
    """
)
# Many keys at once, one row per key; a row comes back for each key bound now.
BIND_ALL = text(
    f"""
    INSERT INTO idempotency_keys (tenant, key, request_hash, job_id)
    SELECT * FROM unnest(CAST(:tenants AS text[]), CAST(:keys AS text[]),
                         CAST(:hashes AS text[]), CAST(:job_ids AS text[]))
    ON CONFLICT (tenant, key) DO UPDATE
       SET request_hash = excluded.request_hash, job_id = excluded.job_id, created_at = now()
     WHERE idempotency_keys.created_at <= now() - interval '{TTL}'
    RETURNING tenant, key
    """
)
# Only a binding still naming the job it was made for: a key bound again since stays.
UNBIND_ALL = text(
    """
    DELETE FROM idempotency_keys
     WHERE (tenant, key, job_id) IN (
           SELECT * FROM unnest(CAST(:tenants AS text[]), CAST(:keys AS text[]),
                                CAST(:job_ids AS text[])))
    """
)


class KeyTakenError(Exception):
    """Raised when a concurrent submit bound the idempotency key first."""


@dataclass(frozen=True)
class Binding:
    """An idempotency key of one submit: who sent it, and a digest of what was sent."""

    tenant: str
    key: str
    request_hash: str


def request_hash(body: Any) -> str:
    """A digest of the body as parsed JSON: key order and spacing do not matter."""
    return hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def find(conn: Connection, tenant: str, key: str) -> tuple[str, str] | None:
    """(request_hash, job_id) of the live binding of `key`, or None."""
    row = conn.execute(LIVE, {"tenant": tenant, "key": key}).one_or_none()
    return (row.request_hash, row.job_id) if row is not None else None


def bind_all(conn: Connection, bindings: Sequence[tuple[Binding, str]]) -> set[tuple[str, str]]:
    """Bind each key to its job ID in the caller's transaction; the (tenant, key) of those
    bound, the others being live already. Each key may appear once."""
    ordered = sorted(bindings, key=lambda pair: (pair[0].tenant, pair[0].key))  # no deadlock
    if not ordered:
        return set()
    rows = conn.execute(
        BIND_ALL,
        {
            "tenants": [b.tenant for b, _ in ordered],
            "keys": [b.key for b, _ in ordered],
            "hashes": [b.request_hash for b, _ in ordered],
            "job_ids": [job_id for _, job_id in ordered],
        },
    )
    return {(row.tenant, row.key) for row in rows}


def unbind_all(conn: Connection, bindings: Sequence[tuple[Binding, str]]) -> None:
    """Release the keys whose submits were refused after they were bound to these jobs."""
    if bindings:
        conn.execute(
            UNBIND_ALL,
            {
                "tenants": [b.tenant for b, _ in bindings],
                "keys": [b.key for b, _ in bindings],
                "job_ids": [job_id for _, job_id in bindings],
            },
        )
