"""A webhook receiver on real HTTP: records every request and answers as a test scripts it."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    """One request as the receiver saw it, and the status it answered."""

    headers: dict[str, str]
    body: bytes
    answered: int

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    def json(self) -> Any:
        return json.loads(self.body)


# Decides the answer to a request: (status, extra headers).
Responder = Callable[[dict[str, str], bytes], tuple[int, dict[str, str]]]


def always(status: int) -> Responder:
    return lambda headers, body: (status, {})


class Server(ThreadingHTTPServer):
    """A threading server whose accept queue holds a dispatcher's every thread at once
    (the standard library's holds 5, and a refused connect is not what a test asks)."""

    daemon_threads = True
    request_queue_size = 128


@dataclass
class Receiver:
    """Serves on `port` once started; `stop()` and `start()` again take it down and up."""

    port: int
    respond: Responder = field(default_factory=lambda: always(200))
    received: list[Received] = field(default_factory=list)
    host: str = "127.0.0.1"
    _server: Server | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hooks"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, extra = receiver.respond(headers, body)
                with receiver._lock:
                    receiver.received.append(Received(headers, body, status))
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = Server((self.host, self.port), Handler)
        threading.Thread(target=server.serve_forever, name="receiver", daemon=True).start()
        self._server = server

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def requests_for(self, webhook_id: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.webhook_id == webhook_id]

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)


@dataclass
class RawReceiver:
    """A receiver that answers on the raw socket as `answer` writes (slowly, endlessly):
    what `Receiver`'s well-behaved server cannot do. Counts the requests it read."""

    answer: Callable[[socket.socket, threading.Event], None]
    host: str = "127.0.0.1"
    requests: list[bytes] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _sock: socket.socket | None = None

    @property
    def url(self) -> str:
        assert self._sock is not None
        return f"http://{self.host}:{self._sock.getsockname()[1]}/hooks"

    def start(self) -> RawReceiver:
        self._sock = socket.create_server((self.host, 0))
        threading.Thread(target=self._serve, args=(self._sock,), daemon=True).start()
        return self

    def _serve(self, sock: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            self.requests.append(data)
            self.answer(conn, self._stop)

    def stop(self) -> None:
        self._stop.set()
        if self._sock is not None:
            self._sock.close()


def dripping(every_s: float) -> Callable[[socket.socket, threading.Event], None]:
    """Starts a 200 answer, then sends one more header byte every `every_s`, for ever."""

    def answer(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        while not stop.wait(every_s):
            conn.sendall(b"x")

    return answer


def endless_body(conn: socket.socket, stop: threading.Event) -> None:
    """A 200 whose body never ends (no length, no chunks: it lasts until the close)."""
    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n")
    block = b"y" * 65536
    while not stop.is_set():
        conn.sendall(block)
