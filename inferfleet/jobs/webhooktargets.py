"""Which addresses a webhook may reach, and a URL's host resolved once, with a bounded wait.

The rule (`refused_kind`): an address must be globally routable. `ipaddress`' `is_global`
is the base; on top of it, because Python 3.11 lets these through or they only matter
inside a network, the following are refused too:

- loopback, unspecified, link-local, multicast and reserved addresses, by name;
- 100.64.0.0/10 (carrier-grade NAT; Alibaba's metadata address 100.100.100.200 lives
  there), 192.0.0.0/24 whole (`is_global` admits 192.0.0.9 and .10), 198.18.0.0/15
  (benchmarking) and fec0::/10 (deprecated site-local; `is_global` admits it);
- 64:ff9b:1::/48, the local-use NAT64 prefix: where its IPv4 part sits is the network's
  choice, so it cannot be judged and is refused whole;
- IPv6 forms that carry an IPv4 address are judged by that address: IPv4-mapped
  (::ffff:a.b.c.d), the well-known NAT64 prefix (64:ff9b::a.b.c.d) and 6to4
  (2002:AABB:CCDD::/48). Teredo (2001::/32) is refused whole (not global).

`check_url` resolves a host once and checks every address; the dispatcher then connects
only to the addresses that were checked, so a name answering differently on a second
look-up (DNS rebinding) never reaches the second answer. At submit the look-up waits at
most `INFERFLEET_WEBHOOK_DNS_TIMEOUT_S` (`bounded_resolver`, or `resolve_within` on the
event loop), so a slow DNS server holds no request for long. The allowlist
(`INFERFLEET_WEBHOOK_ALLOWLIST`: names, addresses, CIDR blocks) admits what the rule
refuses.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from functools import cache
from urllib.parse import urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# Answers a host name with its addresses; empty when it does not resolve (or in time).
Resolver = Callable[[str], list[str]]

REFUSED_BLOCKS: tuple[tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network], ...] = (
    ("carrier-grade NAT", ipaddress.ip_network("100.64.0.0/10")),
    ("IETF protocol assignment", ipaddress.ip_network("192.0.0.0/24")),
    ("benchmarking", ipaddress.ip_network("198.18.0.0/15")),
    ("site-local", ipaddress.ip_network("fec0::/10")),
    ("local-use NAT64", ipaddress.ip_network("64:ff9b:1::/48")),
)
NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")
# How many submit-time look-ups may wait on the system resolver at once, per process;
# more wait in line, each within its own bounded wait.
RESOLVER_THREADS = 8


def embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, NAT64, 6to4), or None."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def refused_kind(address: Address) -> str | None:
    """Why `address` may not be a webhook target, or None if it may."""
    inner = embedded_ipv4(address)
    if inner is not None:
        kind = refused_kind(inner)
        return None if kind is None else f"{kind} (as {inner})"
    named = [
        ("loopback", address.is_loopback),
        ("unspecified", address.is_unspecified),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
    ]
    named += [(kind, address in block) for kind, block in REFUSED_BLOCKS]
    named.append(("reserved", address.is_reserved))
    # Everything else Python knows not to be globally reachable: RFC 1918, ULA,
    # documentation ranges, Teredo, and so on.
    named.append(("private", not address.is_global))
    return next((kind for kind, refused in named if refused), None)


def system_resolve(host: str) -> list[str]:
    """Every address the system resolver gives `host`, in its order of preference."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return []
    return list(dict.fromkeys(str(info[4][0]).split("%")[0] for info in infos))


@cache
def _lookups() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(RESOLVER_THREADS, thread_name_prefix="webhook-dns")


def bounded_resolver(timeout_s: float) -> Resolver:
    """A resolver that waits at most `timeout_s` for the system resolver (empty after).

    The look-up runs on a small pool of its own, so a slow DNS server holds neither the
    caller's thread nor more than `RESOLVER_THREADS` threads of the process.
    """

    def resolve(host: str) -> list[str]:
        future = _lookups().submit(system_resolve, host)
        try:
            return future.result(timeout=timeout_s)
        except FutureTimeout:
            future.cancel()
            return []

    return resolve


async def resolve_within(host: str, timeout_s: float) -> list[str]:
    """`bounded_resolver` for the event loop: the look-up runs on the same small pool,
    and the caller awaits it at most `timeout_s` (empty after) without holding a thread."""
    lookup = asyncio.get_running_loop().run_in_executor(_lookups(), system_resolve, host)
    try:
        return await asyncio.wait_for(lookup, timeout_s)
    except TimeoutError:
        return []


def host_to_resolve(url: str) -> str | None:
    """The name `check_url` would ask its resolver about, or None when it asks nothing
    (a literal address, or a URL refused before any look-up)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".").lower()
    if parts.scheme not in ("http", "https") or not host:
        return None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host
    return None


@dataclass(frozen=True)
class Target:
    """A URL's host with the addresses it was checked at: connect to these only."""

    host: str
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class Refusal:
    """Why a URL may not be posted to; `unresolved` when its host gave no address."""

    reason: str
    unresolved: bool = False


def check_url(url: str, allowlist: Sequence[str], resolver: Resolver) -> Target | Refusal:
    """Resolve `url`'s host once and check every address it gave."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return Refusal(f"webhook URLs must be http or https, not {parts.scheme or 'missing'!r}")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        return Refusal("the webhook URL has no host")
    try:
        addresses: list[Address] = [ipaddress.ip_address(host)]
    except ValueError:
        addresses = [ipaddress.ip_address(a) for a in resolver(host)]
    if not addresses:
        return Refusal(f"{host} does not resolve", unresolved=True)
    checked = Target(parts.hostname or host, tuple(str(a) for a in addresses))
    if host in {entry.lower() for entry in allowlist}:
        return checked
    blocks = [ipaddress.ip_network(e, strict=False) for e in allowlist if _is_network(e)]
    for address in addresses:
        if any(address.version == b.version and address in b for b in blocks):
            continue
        kind = refused_kind(address)
        if kind is not None:
            return Refusal(f"{host} is a {kind} address ({address}); webhooks may not target it")
    return checked


def _is_network(entry: str) -> bool:
    try:
        ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False
    return True
