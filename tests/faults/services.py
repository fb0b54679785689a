"""The fault suite's own services and processes, which its tests may break.

`PrivateStack` drives `scripts/stack.sh kafka3` (three Kafka nodes) and `pgtemp` (a
Postgres cluster) in a folder of the session's own, on ports nobody else uses; the
shared stack is never touched. `Service` is one process of the fleet (API, worker,
scheduler) started by a test, with its log in a file.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
STACK_SH = ROOT / "scripts" / "stack.sh"


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def kafka3_base_port() -> int:
    """A client port for node 1 such that the cluster's six ports are free
    (clients base..base+2, controllers base+100..base+102)."""
    for base in range(29092, 32000, 200):
        ports = [base + i for i in range(3)] + [base + 100 + i for i in range(3)]
        if all(port_free(p) for p in ports):
            return base
    raise RuntimeError("no six free ports for the three-node Kafka cluster in 29092-32000")


@dataclass
class PrivateStack:
    """Kafka (three nodes) under `folder` and Postgres under `pg_folder`, the suite's own.

    Postgres runs as its own user when the suite runs as root, so its folder must be one
    that user can reach (a checkout under /root is not): a temporary folder."""

    folder: Path
    pg_folder: Path
    kafka_port: int = field(default_factory=kafka3_base_port)
    pg_port: int = field(default_factory=free_port)

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{self.kafka_port + i}" for i in range(3))

    @property
    def database_url(self) -> str:
        return f"postgresql+psycopg://inferfleet:inferfleet@127.0.0.1:{self.pg_port}/inferfleet"

    def node_port(self, node: int) -> int:
        return self.kafka_port + node - 1

    def stack(self, *args: str, timeout: float = 240) -> str:
        """Run `scripts/stack.sh <args>` for this stack; its output, or an error with it."""
        env = {
            **os.environ,
            "KAFKA3_DIR": str(self.folder / "kafka3"),
            "KAFKA3_PORT": str(self.kafka_port),
            "PGTEMP_DIR": str(self.pg_folder),
            "PGTEMP_PORT": str(self.pg_port),
            # stack.sh checks Kafka with the virtualenv's kafka-python: this one's.
            "INFERFLEET_VENV": os.environ.get("INFERFLEET_VENV", sys.prefix),
        }
        done = subprocess.run(
            ["bash", str(STACK_SH), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        output = done.stdout + done.stderr
        if done.returncode != 0:
            raise RuntimeError(f"stack.sh {' '.join(args)} exited {done.returncode}:\n{output}")
        return output


@dataclass
class Service:
    """A process of the fleet (`python -m <module> <args>`), its output in `log_path`."""

    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Service:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", *self.args],
                cwd=ROOT,
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def exit_code(self) -> int | None:
        """None while it runs."""
        assert self.proc is not None
        return self.proc.poll()

    def send(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self) -> None:
        """SIGCONT (it may be stopped), SIGTERM, SIGKILL after 20 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGCONT)
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def wait_ready(self, url: str, timeout: float = 90) -> None:
        """Until `url` answers 200; raises with the log tail if it exits or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.exit_code() is not None:
                raise RuntimeError(f"{self.name} exited {self.exit_code()}:\n{self.tail()}")
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"{self.name} not ready at {url} after {timeout:.0f} s:\n{self.tail()}")
