"""Idempotency keys: the same key with an equal body within 24 h returns the first job.

A key is bound in the same transaction that inserts the job's row, so of concurrent
duplicates exactly one creates a job and the others find it. A submit that is refused
(422, 503, …) leaves the key unbound.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, text

TTL = "24 hours"

LIVE = text(
    f"""
    SELECT request_hash, job_id FROM idempotency_keys
     WHERE tenant = :tenant AND key = :key AND created_at > now() - interval '{TTL}'
    """
)
BIND = text(
    f"""
    INSERT INTO idempotency_keys (tenant, key, request_hash, job_id)
    VALUES (:tenant, :key, :request_hash, :job_id)
    ON CONFLICT (tenant, key) DO UPDATE
       SET request_hash = excluded.request_hash, job_id = excluded.job_id, created_at = now()
     WHERE idempotency_keys.created_at <= now() - interval '{TTL}'
    RETURNING job_id
    """
)
UNBIND = text("DELETE FROM idempotency_keys WHERE tenant = :tenant AND key = :key")


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


def bind(conn: Connection, binding: Binding, job_id: str) -> None:
    """Bind the key to `job_id` in the caller's transaction; KeyTakenError if it is live."""
    params = {
        "tenant": binding.tenant,
        "key": binding.key,
        "request_hash": binding.request_hash,
        "job_id": job_id,
    }
    if conn.execute(BIND, params).one_or_none() is None:
        raise KeyTakenError(binding.key)


def unbind(engine: Engine, binding: Binding) -> None:
    """Release a key whose submit was refused after it was bound."""
    with engine.begin() as conn:
        conn.execute(UNBIND, {"tenant": binding.tenant, "key": binding.key})
