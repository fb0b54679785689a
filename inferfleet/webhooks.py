"""Webhook signing (Standard Webhooks) and the safety check of webhook URLs.

Signatures are made by the `standardwebhooks` library: `v1,` + base64 HMAC-SHA256 over
`{id}.{timestamp}.{body}`, keyed by the base64-decoded part of the tenant's `whsec_`
secret. During a secret rotation every delivery carries both signatures.

A webhook URL must be http(s), and its host must not be, or resolve to, a loopback,
private, link-local (cloud metadata), multicast, reserved or unspecified address,
unless the allowlist names the host or a block holding the address. A name that does
not resolve is accepted here and checked again at delivery.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from standardwebhooks.webhooks import Webhook

Resolver = Callable[[str], list[str]]
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def signed_headers(
    secrets: Sequence[str], msg_id: str, timestamp: int, body: str
) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt, signed with every given secret."""
    at = datetime.fromtimestamp(timestamp, UTC)
    signatures = " ".join(Webhook(secret).sign(msg_id, at, body) for secret in secrets)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signatures,
        "content-type": "application/json",
    }


def resolve(host: str) -> list[str]:
    """Every address `host` resolves to (empty when it does not resolve)."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return []
    return sorted({str(info[4][0]) for info in infos})


def refused_kind(address: Address) -> str | None:
    """Why an address may not be a webhook target, or None if it may."""
    checks: list[tuple[str, Any]] = [
        ("loopback", address.is_loopback),
        ("unspecified", address.is_unspecified),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        # Python counts every block that is not globally reachable here, documentation
        # and carrier-grade NAT ranges included.
        ("private", address.is_private),
    ]
    return next((kind for kind, refused in checks if refused), None)


def url_problem(url: str, allowlist: Sequence[str], resolver: Resolver = resolve) -> str | None:
    """Why `url` may not receive webhooks, or None if it may."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return f"webhook URLs must be http or https, not {parts.scheme or 'missing'!r}"
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        return "the webhook URL has no host"
    if host in {entry.lower() for entry in allowlist}:
        return None
    blocks = [ipaddress.ip_network(e, strict=False) for e in allowlist if _is_network(e)]
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        addresses = [ipaddress.ip_address(a.split("%")[0]) for a in resolver(host)]
    for address in addresses:
        if any(address in block for block in blocks):
            continue
        kind = refused_kind(address)
        if kind is not None:
            return f"{host} is a {kind} address ({address}); webhooks may not target it"
    return None


def _is_network(entry: str) -> bool:
    try:
        ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False
    return True
