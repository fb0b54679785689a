"""A TCP forwarder a test puts between a process it started and a shared service, so the
test can take the service away from that process alone (and give it back) without
touching the service: `cut` closes every connection and refuses new ones, `hold`
keeps connections open but passes nothing (a service that stopped answering)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

CHUNK = 64 * 1024


class Forwarder:
    """Forwards 127.0.0.1:`port` to `target`, in daemon threads, until `close`."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._up = True
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = False
        threading.Thread(target=self._accept, name=f"forward-{self.port}", daemon=True).start()

    def cut(self) -> None:
        """Close every connection; new ones are closed as soon as they are accepted."""
        with self._lock:
            self._up = False
            for sock in self._open:
                _close(sock)
            self._open.clear()

    def hold(self) -> None:
        """Keep connections open but pass no byte either way until `restore`."""
        self._flowing.clear()

    def restore(self) -> None:
        """Forward again."""
        with self._lock:
            self._up = True
        self._flowing.set()

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._flowing.set()
        _close(self._listener)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if not self._up:
                    _close(client)
                    continue
                try:
                    upstream = socket.create_connection(self._target, timeout=5)
                except OSError:
                    _close(client)
                    continue
                upstream.settimeout(None)
                self._open.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(CHUNK):
                self._flowing.wait()
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                for sock in (source, sink):
                    self._open.discard(sock)
                    _close(sock)


def _close(sock: socket.socket) -> None:
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


@contextmanager
def forwarding(host: str, port: int) -> Iterator[Forwarder]:
    """A forwarder to `host:port` for the duration of the block."""
    forwarder = Forwarder((host, port))
    try:
        yield forwarder
    finally:
        forwarder.close()
