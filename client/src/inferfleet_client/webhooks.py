"""Verifying the webhooks the server sends (Standard Webhooks), for receivers.

The server signs `"{webhook-id}.{webhook-timestamp}.{body}"` with HMAC-SHA256 keyed by
the base64-decoded part of the tenant's `whsec_…` secret and sends `v1,<base64>` in
`webhook-signature`; during a secret rotation it sends one signature per secret,
space-separated, so a receiver holding either secret accepts it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

from inferfleet_client.errors import WebhookVerificationError

TOLERANCE_S = 300  # how far a timestamp may be from the receiver's clock


def _key(secret: str) -> bytes:
    try:
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except binascii.Error as e:
        raise ValueError("a webhook secret is `whsec_` followed by base64") from e


def sign(secret: str, msg_id: str, timestamp: int, body: bytes | str) -> str:
    """The `v1,…` signature of one webhook attempt under `secret`."""
    raw = body.encode() if isinstance(body, str) else body
    signed = f"{msg_id}.{timestamp}.".encode() + raw
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify_webhook(
    body: bytes | str,
    headers: Mapping[str, str],
    secret: str | Iterable[str],
    *,
    tolerance_s: float = TOLERANCE_S,
    now: float | None = None,
) -> dict[str, Any]:
    """The webhook's JSON body, once its signature and timestamp hold.

    `body` is the raw request body, exactly as received; `headers` its headers (any
    case); `secret` the tenant's `whsec_…` secret, or several (a receiver that has
    rotated keeps the old one until the server stops signing with it). Raises
    WebhookVerificationError naming what failed: a missing header, a timestamp more
    than `tolerance_s` from `now` (a replay), or no signature made with any secret.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        msg_id = lowered["webhook-id"]
        stamp = lowered["webhook-timestamp"]
        signatures = lowered["webhook-signature"]
    except KeyError as e:
        raise WebhookVerificationError(f"the webhook has no {e.args[0]} header") from e
    try:
        timestamp = int(stamp)
    except ValueError as e:
        raise WebhookVerificationError(f"webhook-timestamp {stamp!r} is not unix seconds") from e
    skew = (time.time() if now is None else now) - timestamp
    if abs(skew) > tolerance_s:
        raise WebhookVerificationError(
            f"webhook-timestamp {timestamp} is {abs(skew):.0f} s "
            f"{'old' if skew > 0 else 'in the future'}; at most {tolerance_s:.0f} s is accepted"
        )
    secrets = [secret] if isinstance(secret, str) else list(secret)
    expected = {sign(s, msg_id, timestamp, body) for s in secrets}
    offered = signatures.split()
    if not any(hmac.compare_digest(o, e) for o in offered for e in expected):
        raise WebhookVerificationError(
            f"no signature of webhook {msg_id} matches the secret(s) given "
            f"({len(offered)} signature(s) offered)"
        )
    raw = body.encode() if isinstance(body, str) else body
    parsed: dict[str, Any] = json.loads(raw)
    return parsed
