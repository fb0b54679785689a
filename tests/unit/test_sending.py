"""One webhook POST on the wire, against raw HTTP servers on 127.0.0.1 in a thread."""

from __future__ import annotations

import contextlib
import datetime
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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


def read_request(conn: socket.socket) -> bytes:
    """A whole request (headers and `content-length` body): closing with unread bytes
    would reset the connection before the client reads the answer."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (
            int(v)
            for k, _, v in (line.partition(b":") for line in head.split(b"\r\n"))
            if k.strip().lower() == b"content-length"
        ),
        0,
    )
    while len(body) < length:
        chunk = conn.recv(4096)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


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
            data = read_request(conn)
            if not data:
                return
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


def test_with_a_proxy_the_request_goes_to_the_proxy_for_the_proxy_to_check(serve) -> None:  # type: ignore[no-untyped-def]
    """The dispatcher neither resolves nor pins: the proxy (smokescreen) gets the
    absolute URL and decides."""
    proxy = serve(ok)

    answer = post(
        "http://hooks.test:8080/x",
        {},
        b"{}",
        deadline_s=5,
        ssl_context=httpx.create_ssl_context(),
        proxy=f"http://127.0.0.1:{proxy.port}",
    )

    assert answer.status == 200
    (request,) = proxy.requests
    assert request.startswith(b"POST http://hooks.test:8080/x HTTP/1.1\r\n")


def make_tls(names: list[str]) -> tuple[bytes, bytes, bytes]:
    """A CA certificate, and a server certificate for `names` signed by it, with its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def build(subject: str, key: Any, issuer: str, signer: Any, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            sans = x509.SubjectAlternativeName([x509.DNSName(n) for n in names])
            builder = builder.add_extension(sans, critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = build("test ca", ca_key, "test ca", ca_key, True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = build(names[0], key, "test ca", ca_key, False)
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return ca.public_bytes(pem), cert.public_bytes(pem), key_pem


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, ssl.SSLContext, list[str]]]:
    """An HTTPS server on 127.0.0.1 with a certificate for hooks.test only; yields its
    port, a client context trusting its CA, and the server names clients sent (SNI)."""
    ca, cert, key = make_tls(["hooks.test"])
    (tmp_path / "cert.pem").write_bytes(cert + key)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(tmp_path / "cert.pem")
    names: list[str] = []

    def sni(sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        names.append(str(name))

    server_ctx.sni_callback = sni  # type: ignore[assignment]
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with contextlib.suppress(OSError), server_ctx.wrap_socket(conn, server_side=True) as s:
                read_request(s)
                ok(s)

    threading.Thread(target=serve, daemon=True).start()
    client_ctx = ssl.create_default_context(cadata=ca.decode())
    yield listener.getsockname()[1], client_ctx, names
    stop.set()
    listener.close()


def test_tls_to_a_pinned_address_keeps_the_hosts_server_name_and_certificate_check(
    tls_server: tuple[int, ssl.SSLContext, list[str]],
) -> None:
    port, ctx, names = tls_server

    answer = post(
        f"https://hooks.test:{port}/x",
        {},
        b"{}",
        deadline_s=5,
        ssl_context=ctx,
        host="hooks.test",
        addresses=["127.0.0.1"],
    )

    assert answer.status == 200
    assert names == ["hooks.test"]


def test_tls_to_a_pinned_address_still_refuses_a_certificate_for_another_name(
    tls_server: tuple[int, ssl.SSLContext, list[str]],
) -> None:
    port, ctx, names = tls_server

    with pytest.raises(httpcore.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        post(
            f"https://other.test:{port}/x",
            {},
            b"{}",
            deadline_s=5,
            ssl_context=ctx,
            host="other.test",
            addresses=["127.0.0.1"],
        )
    assert names == ["other.test"]


def test_without_a_proxy_a_post_needs_checked_addresses() -> None:
    with pytest.raises(ValueError, match="checked addresses"):
        post(
            "http://hooks.test/x", {}, b"{}", deadline_s=1, ssl_context=ssl.create_default_context()
        )
