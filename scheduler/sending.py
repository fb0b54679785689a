"""One webhook POST on the wire: pinned addresses, one overall deadline, a capped read.

Built on httpcore (the transport under httpx), whose network backend is the seam:
- `PinnedBackend` opens TCP connections only to the addresses that were checked for
  the URL's host (`inferfleet.jobs.webhooktargets`), never resolving the name again. The URL
  keeps its host, so the `Host` header, TLS server name (SNI) and certificate check
  are the host's own.
- Every connect, write, TLS handshake and read waits at most what is left of the one
  deadline of the attempt, so the whole attempt (connect, send, headers, body) ends by
  it, however slowly a receiver drips its bytes.
- At most `MAX_RESPONSE_BYTES` of the body are read; the connection is then closed.

Each attempt has a connection pool of its own, closed after it: no connection, cookie
or TLS session crosses from one receiver (or tenant) to another. With a proxy, the
connection goes to the proxy instead, which checks the target (and the deadline holds).
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import httpcore

MAX_RESPONSE_BYTES = 4096
USER_AGENT = b"inferfleet-webhooks/1"


class Deadline:
    """The monotonic time an attempt must end by."""

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds

    def wait(self, timeout: float | None, expired: type[Exception]) -> float:
        """`timeout` cut to what is left; raises `expired` when nothing is."""
        left = self.at - time.monotonic()
        if left <= 0:
            raise expired("the attempt's deadline passed")
        return left if timeout is None else min(timeout, left)


class DeadlineStream(httpcore.NetworkStream):
    """A network stream whose every operation ends by the deadline."""

    def __init__(self, inner: httpcore.NetworkStream, deadline: Deadline) -> None:
        self._inner = inner
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._deadline.wait(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._deadline.wait(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        wait = self._deadline.wait(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(
            self._inner.start_tls(ssl_context, server_hostname, wait), self._deadline
        )

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class PinnedBackend(httpcore.NetworkBackend):
    """Connects `host` to its checked `addresses` only (each in turn until one answers),
    or, with no pin, to whatever it is asked (the proxy); always within the deadline."""

    def __init__(
        self,
        deadline: Deadline,
        host: str | None = None,
        addresses: Sequence[str] = (),
        inner: httpcore.NetworkBackend | None = None,
    ) -> None:
        self._deadline = deadline
        self._host = host
        self._addresses = tuple(addresses)
        self._inner = inner or httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        if self._host is None:
            targets: tuple[str, ...] = (host,)
        elif host.strip("[]").lower() == self._host.strip("[]").lower():
            targets = self._addresses
        else:
            raise httpcore.ConnectError(f"{host} is not the checked host {self._host}")
        failure: Exception = httpcore.ConnectError(f"{host} has no checked address")
        for address in targets:
            wait = self._deadline.wait(timeout, httpcore.ConnectTimeout)
            try:
                stream = self._inner.connect_tcp(address, port, wait, local_address, socket_options)
            except httpcore.ConnectError as e:
                failure = e
                continue
            return DeadlineStream(stream, self._deadline)
        raise failure

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("webhooks are never posted to a unix socket")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass(frozen=True)
class Answer:
    """What a receiver answered: its status, its `Retry-After`, and the body's first
    bytes (never more than `MAX_RESPONSE_BYTES`)."""

    status: int
    retry_after: str | None
    head: bytes


def read_capped(chunks: Iterable[bytes], limit: int = MAX_RESPONSE_BYTES) -> bytes:
    """The first `limit` bytes of a body; stops pulling chunks once it has them."""
    got = bytearray()
    for chunk in chunks:
        got += chunk[: limit - len(got)]
        if len(got) >= limit:
            break
    return bytes(got)


def post(
    url: str,
    headers: dict[str, str],
    body: bytes,
    *,
    deadline_s: float,
    ssl_context: ssl.SSLContext,
    host: str | None = None,
    addresses: Sequence[str] = (),
    proxy: str | None = None,
) -> Answer:
    """POST `body` to `url` within `deadline_s` in all, connecting to `host`'s checked
    `addresses` (or through `proxy`). Raises httpcore's errors: a `TimeoutException`
    when the deadline passed, another `httpcore` error when no answer came."""
    if proxy is None and (host is None or not addresses):
        raise ValueError(f"posting to {url} without a proxy needs its checked addresses")
    deadline = Deadline(deadline_s)
    backend = PinnedBackend(deadline, None if proxy else host, addresses)
    pool: httpcore.ConnectionPool | httpcore.HTTPProxy
    if proxy:
        pool = httpcore.HTTPProxy(
            proxy_url=proxy,
            ssl_context=ssl_context,
            max_connections=1,
            max_keepalive_connections=0,
            network_backend=backend,
        )
    else:
        pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=1,
            max_keepalive_connections=0,
            network_backend=backend,
        )
    timeouts = {"connect": deadline_s, "read": deadline_s, "write": deadline_s, "pool": deadline_s}
    sent = [(k.encode(), v.encode()) for k, v in headers.items()] + [(b"user-agent", USER_AGENT)]
    with (
        pool,
        pool.stream(
            "POST", url, headers=sent, content=body, extensions={"timeout": timeouts}
        ) as response,
    ):
        head = read_capped(response.iter_stream())
        retry_after = next(
            (v.decode("latin-1") for k, v in response.headers if k.lower() == b"retry-after"),
            None,
        )
        return Answer(response.status, retry_after, head)
