"""Idempotency keys: the same key with an equal body within 24 h answers with what the
first request made: a job (`POST /v1/jobs`), the jobs of a bulk submit in item order
(`POST /v1/jobs/bulk`), or a batch (`POST /v1/batches`).

A key is bound in the same transaction that inserts what it names, so of concurrent
duplicates exactly one creates it and the others find it. A submit that is refused
(422, 503, …) leaves the key unbound.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Connection, text

from api.plumbing.problems import ProblemError

TTL = "24 hours"

LIVE = text(
    f"""
    SELECT request_hash, job_id, job_ids, batch_id FROM idempotency_keys
     WHERE tenant = :tenant AND key = :key AND created_at > now() - interval '{TTL}'
    """
)
# Many keys at once, one row per key; a row comes back for each key bound now. A bulk
# submit's job IDs travel comma-joined (no ID holds a comma), NULL for a single job.
BIND_ALL = text(
    f"""
    INSERT INTO idempotency_keys (tenant, key, request_hash, job_id, job_ids, batch_id)
    SELECT t, k, h, j, string_to_array(js, ','), b
      FROM unnest(CAST(:tenants AS text[]), CAST(:keys AS text[]), CAST(:hashes AS text[]),
                  CAST(:job_ids AS text[]), CAST(:many AS text[]), CAST(:batch_ids AS text[]))
           AS u(t, k, h, j, js, b)
    ON CONFLICT (tenant, key) DO UPDATE
       SET request_hash = excluded.request_hash, job_id = excluded.job_id,
           job_ids = excluded.job_ids, batch_id = excluded.batch_id, created_at = now()
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


@dataclass(frozen=True)
class Bound:
    """What a key names: the jobs of one submit (one, or a bulk's in item order), or a
    batch."""

    job_ids: tuple[str, ...] = ()
    batch_id: str | None = None

    @property
    def first_job(self) -> str | None:
        return self.job_ids[0] if self.job_ids else None


@dataclass(frozen=True)
class Found:
    """A live binding: the digest of the body it was made with, and what it names."""

    request_hash: str
    bound: Bound


def find(conn: Connection, tenant: str, key: str) -> Found | None:
    """The live binding of `key`, or None."""
    row = conn.execute(LIVE, {"tenant": tenant, "key": key}).one_or_none()
    if row is None:
        return None
    ids = tuple(row.job_ids) if row.job_ids else ((row.job_id,) if row.job_id else ())
    return Found(row.request_hash, Bound(ids, row.batch_id))


def binding_for(tenant: str, key: str | None, body: BaseModel) -> Binding | None:
    """The binding a request with `key` (None: no header) and `body` asks for."""
    if key is None:
        return None
    return Binding(tenant, key, request_hash(body.model_dump(mode="json", exclude_unset=True)))


def live(conn: Connection, binding: Binding) -> Bound | None:
    """What `binding`'s key names if it is live and was bound with an equal body; None
    if it is not live. A live key bound with another body is 409."""
    found = find(conn, binding.tenant, binding.key)
    if found is None:
        return None
    if found.request_hash != binding.request_hash:
        raise ProblemError(
            409, "Conflict", f"Idempotency-Key {binding.key!r} was used with a different body"
        )
    return found.bound


def lost_race(binding: Binding, retry_after_s: int) -> ProblemError:
    """The answer when a concurrent request bound the key first and was then refused,
    releasing it: neither request made anything."""
    return ProblemError(
        503,
        "Service Unavailable",
        f"a concurrent request with Idempotency-Key {binding.key!r} was not accepted, "
        f"and neither was this one; send it again in {retry_after_s} s",
        headers={"Retry-After": str(retry_after_s)},
    )


def bind_all(conn: Connection, bindings: Sequence[tuple[Binding, Bound]]) -> set[tuple[str, str]]:
    """Bind each key to what it names in the caller's transaction; the (tenant, key) of
    those bound, the others being live already. Each key may appear once."""
    ordered = sorted(bindings, key=lambda pair: (pair[0].tenant, pair[0].key))  # no deadlock
    if not ordered:
        return set()
    rows = conn.execute(
        BIND_ALL,
        {
            "tenants": [b.tenant for b, _ in ordered],
            "keys": [b.key for b, _ in ordered],
            "hashes": [b.request_hash for b, _ in ordered],
            "job_ids": [bound.first_job for _, bound in ordered],
            "many": [
                ",".join(bound.job_ids) if len(bound.job_ids) > 1 else None for _, bound in ordered
            ],
            "batch_ids": [bound.batch_id for _, bound in ordered],
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
