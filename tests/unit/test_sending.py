"""One webhook POST on the wire, against raw HTTP servers on 127.0.0.1 in a thread."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import httpcore
import httpx
import pytest

from scheduler.sending import (
    MAX_RESPONSE_BYTES,
    Answer,
    Deadline,
    PinnedBackend,
    post,
    read_capped,
)

Answerer = Callable[[socket.socket], None]


class RawServer:
    """Accepts connections on 127.0.0.1 and hands each, its request read, to `answer`."""

    def __init__(self, answer: Answerer) -> None:
        self.answer = answer
        self.requests: list[bytes] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stopped = threading.Event()
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            self.requests.append(data)
            with contextlib.suppress(OSError):
                self.answer(conn)

    def stop(self) -> None:
        self.stopped.set()
        self.sock.close()


@pytest.fixture
def serve() -> Iterator[Callable[[Answerer], RawServer]]:
    servers: list[RawServer] = []

    def start(answer: Answerer) -> RawServer:
        servers.append(RawServer(answer))
        return servers[-1]

    yield start
    for s in servers:
        s.stop()


def ok(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nset-cookie: s=1\r\n\r\nok")


def send(url: str, addresses: list[str], deadline_s: float = 5.0) -> Answer:
    """POST to `url`, whose host is `hooks.test`, pinned to `addresses`."""
    return post(
        url,
        {"content-type": "application/json"},
        b"{}",
        deadline_s=deadline_s,
        ssl_context=httpx.create_ssl_context(),
        host="hooks.test",
        addresses=addresses,
    )


def test_a_receiver_dripping_its_headers_is_cut_at_the_deadline(serve) -> None:  # type: ignore[no-untyped-def]
    """Each byte comes well within any per-read timeout; the whole attempt still ends."""
    stop = threading.Event()

    def drip(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        while not stop.wait(0.3):
            conn.sendall(b"x")

    server = serve(drip)
    try:
        with pytest.raises(httpcore.TimeoutException):
            send(f"http://hooks.test:{server.port}/x", ["127.0.0.1"], deadline_s=1.5)
    finally:
        stop.set()


def test_an_endless_body_is_read_to_4_kib_only(serve) -> None:  # type: ignore[no-untyped-def]
    sent = [0]

    def endless(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nretry-after: 7\r\n\r\n")
        block = b"y" * 65536
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            conn.sendall(block)
            sent[0] += len(block)

    server = serve(endless)
    answer = send(f"http://hooks.test:{server.port}/x", ["127.0.0.1"])

    assert answer.status == 200
    assert answer.retry_after == "7"
    assert answer.head == b"y" * MAX_RESPONSE_BYTES


def test_read_capped_stops_pulling_an_endless_stream() -> None:
    pulled = [0]

    def endless() -> Iterator[bytes]:
        while True:
            pulled[0] += 1
            yield b"z" * 1000

    assert read_capped(endless()) == b"z" * MAX_RESPONSE_BYTES
    assert pulled[0] == 5


def test_the_post_goes_to_the_checked_address_with_the_hosts_own_host_header(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve(ok)

    answer = send(f"http://hooks.test:{server.port}/x", ["127.0.0.1"])

    assert answer.status == 200
    (request,) = server.requests
    assert f"host: hooks.test:{server.port}".encode() in request.lower()
    assert b"cookie" not in request.lower()


def test_the_checked_addresses_are_tried_in_turn(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve(ok)  # on 127.0.0.1 only: 127.0.0.2 refuses the connection

    answer = send(f"http://hooks.test:{server.port}/x", ["127.0.0.2", "127.0.0.1"])

    assert answer.status == 200


def test_the_pinned_backend_connects_no_other_host() -> None:
    backend = PinnedBackend(
        deadline=Deadline(5),
        host="hooks.test",
        addresses=["127.0.0.1"],
    )
    with pytest.raises(httpcore.ConnectError):
        backend.connect_tcp("other.test", 80)
