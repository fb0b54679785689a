"""API keys and tenants: keys are random, shown once, and stored as their sha256.

A key belongs to a tenant and carries one scope: `jobs` (submit and read the tenant's
jobs) or `admin` (everything, every tenant). Each tenant has a webhook signing secret
(`whsec_` + base64 of 24 random bytes), made with its first key; after a rotation the
previous secret also signs for a while, so receivers can switch without losing events.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Connection, Select, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from inferfleet.caching import ChangeCache
from inferfleet.errors import FieldError, InvalidInputError, NotFoundError
from inferfleet.tables import api_keys, tenants

Scope = Literal["jobs", "admin"]
SCOPES: tuple[Scope, ...] = ("jobs", "admin")
TENANT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
KEY_PREFIX = "ifk_"
# How many found keys one process remembers (`KeyLookup`).
KNOWN_KEYS_CACHED = 10_000


@dataclass(frozen=True)
class KeyRecord:
    """A stored key, without the key itself."""

    id: str
    tenant: str
    scope: Scope
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class NewKey:
    """A key as made: the only time the key itself is known."""

    key: str
    record: KeyRecord
    webhook_secret: str


def hash_key(key: str) -> str:
    """What is stored and looked up instead of the key."""
    return hashlib.sha256(key.encode()).hexdigest()


def _webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def _check(tenant: str, scope: str) -> None:
    errors = []
    if not TENANT_NAME.fullmatch(tenant):
        errors.append(
            FieldError(("tenant",), "must match [a-z0-9][a-z0-9_-]{0,62}", "pattern", tenant)
        )
    if scope not in SCOPES:
        errors.append(FieldError(("scope",), "must be 'jobs' or 'admin'", "enum", scope))
    if errors:
        raise InvalidInputError(errors)


def create_key(conn: Connection, tenant: str, scope: str) -> NewKey:
    """Make a key for `tenant` (creating the tenant and its webhook secret if new)."""
    _check(tenant, scope)
    conn.execute(
        insert(tenants)
        .values(name=tenant, webhook_secret=_webhook_secret())
        .on_conflict_do_nothing(index_elements=["name"])
    )
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    key_id = "key_" + secrets.token_hex(8)
    row = conn.execute(
        api_keys.insert()
        .values(id=key_id, tenant=tenant, scope=scope, key_hash=hash_key(key))
        .returning(api_keys)
    ).one()
    secret = conn.execute(
        select(tenants.c.webhook_secret).where(tenants.c.name == tenant)
    ).scalar_one()
    return NewKey(key=key, record=_record(row), webhook_secret=secret)


def _live_key(key: str) -> Select[Any]:
    return select(api_keys).where(
        api_keys.c.key_hash == hash_key(key), api_keys.c.revoked_at.is_(None)
    )


def authenticate(conn: Connection, key: str) -> KeyRecord | None:
    """The live key record for `key`, or None if it is unknown or revoked."""
    row = conn.execute(_live_key(key)).one_or_none()
    return _record(row) if row is not None else None


class KeyLookup:
    """`authenticate` over the asyncio engine `db`, with both answers remembered.

    A found key is answered from memory until `clear()` (called when Postgres announces
    a change to `api_keys`: `inferfleet.clients.notify.KEYS`) or for at most `max_age_s`,
    the bound on a revocation when announcements do not arrive. At most
    KNOWN_KEYS_CACHED found keys are kept, stored by their hashes.

    A key not found is refused without a database round trip for `unknown_ttl_s`; at most
    `unknown_size` misses are kept (the oldest go first). `clear()` keeps them: a miss
    cannot hide a key made afterwards, since keys are 256 random bits, so a key that did
    not exist when it was tried was guessed (and the miss is forgotten after
    `unknown_ttl_s` anyway).

    An answer from memory never waits on I/O; `clear()` may be called from any thread.
    """

    def __init__(
        self,
        db: AsyncEngine,
        max_age_s: float,
        unknown_ttl_s: float,
        unknown_size: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._known: ChangeCache[str, KeyRecord] = ChangeCache(max_age_s, KNOWN_KEYS_CACHED, clock)
        self._unknown: ChangeCache[str, bool] = ChangeCache(unknown_ttl_s, unknown_size, clock)

    async def __call__(self, key: str) -> KeyRecord | None:
        """The live key record for `key`, or None if it is unknown or revoked."""
        digest = hash_key(key)
        known = self._known.get(digest)
        if known is not None:
            return known
        if self._unknown.get(digest):
            return None
        token, unknown_token = self._known.token(), self._unknown.token()
        async with self._db.connect() as conn:
            row = (await conn.execute(_live_key(key))).one_or_none()
        if row is None:
            self._unknown.put(digest, True, unknown_token)
            return None
        record = _record(row)
        self._known.put(digest, record, token)
        return record

    def clear(self) -> None:
        """Forget every found key (a key was made, revoked or deleted somewhere)."""
        self._known.clear()


def list_keys(conn: Connection) -> list[KeyRecord]:
    """Every key, oldest first."""
    rows = conn.execute(select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id))
    return [_record(r) for r in rows]


def revoke(conn: Connection, key_id: str) -> KeyRecord:
    """Revoke a key; requests with it are refused from then on."""
    row = conn.execute(
        api_keys.update()
        .where(api_keys.c.id == key_id)
        .values(revoked_at=func.coalesce(api_keys.c.revoked_at, func.now()))
        .returning(api_keys)
    ).one_or_none()
    if row is None:
        raise NotFoundError(f"no key {key_id!r}")
    return _record(row)


def rotate_secret(conn: Connection, tenant: str, overlap_s: float) -> tuple[str, datetime]:
    """Give `tenant` a new webhook secret; the current one keeps signing for `overlap_s`.

    Returns the new secret and when the previous one stops signing.
    """
    row = conn.execute(
        tenants.update()
        .where(tenants.c.name == tenant)
        .values(
            previous_webhook_secret=tenants.c.webhook_secret,
            previous_secret_expires_at=func.now() + timedelta(seconds=overlap_s),
            webhook_secret=_webhook_secret(),
        )
        .returning(tenants.c.webhook_secret, tenants.c.previous_secret_expires_at)
    ).one_or_none()
    if row is None:
        raise NotFoundError(f"no tenant {tenant!r}")
    return row.webhook_secret, row.previous_secret_expires_at


def _record(row: Any) -> KeyRecord:
    return KeyRecord(
        id=row.id,
        tenant=row.tenant,
        scope=row.scope,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )
