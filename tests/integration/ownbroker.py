"""A Kafka broker of the test's own, on free ports with its own data folder, that the test
may kill and start again; the shared broker of the local stack is never touched.

It runs like `scripts/stack.sh` runs the stack's broker: the same jars
(`.stack/kafka/libs`, fetched by `scripts/stack.sh up`), the same configuration
template (`stack/kafka/server.properties`), KRaft with one node as broker and controller.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

from kafka.admin import KafkaAdminClient

from tests.integration.conftest import ROOT, free_port

TEMPLATE = ROOT / "stack" / "kafka"


def kafka_libs() -> Path | None:
    """The broker's jars: this checkout's, or (in a git worktree) the main checkout's."""
    roots = [ROOT]
    common = subprocess.run(
        ["git", "rev-parse", "--git-common-dir"], cwd=ROOT, capture_output=True, text=True
    )
    if common.returncode == 0:
        roots.append((ROOT / common.stdout.strip()).resolve().parent)
    for root in roots:
        libs = root / ".stack" / "kafka" / "libs"
        if libs.is_dir() and any(libs.glob("kafka_*.jar")):
            return libs
    return None


class OwnBroker:
    """One KRaft node on 127.0.0.1; `kill` it (SIGKILL) and `start` it again on the same
    ports and data."""

    def __init__(self, folder: Path, libs: Path) -> None:
        self.port = free_port()
        self.controller_port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._libs = libs
        self._folder = folder
        self._config = folder / "server.properties"
        self._log = folder / "kafka.out"
        self._proc: subprocess.Popen[bytes] | None = None
        data = folder / "data"
        data.mkdir(parents=True)
        text = (TEMPLATE / "server.properties").read_text()
        text = (
            text.replace("@KAFKA_DATA_DIR@", str(data))
            .replace("127.0.0.1:9092", self.bootstrap)
            .replace("127.0.0.1:9093", f"127.0.0.1:{self.controller_port}")
        )
        self._config.write_text(text)
        cluster = self._java("kafka.tools.StorageTool", "random-uuid").strip().splitlines()[-1]
        self._java(
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id",
            cluster,
            "--config",
            str(self._config),
        )

    def _java(self, *args: str) -> str:
        return subprocess.run(
            ["java", *self._jvm(), *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout

    def _jvm(self) -> list[str]:
        return [
            "-Xms128m",
            "-Xmx512m",
            f"-Dkafka.logs.dir={self._folder}",
            f"-Dlog4j2.configurationFile={TEMPLATE / 'log4j2.properties'}",
            "-cp",
            f"{self._libs}/*",
        ]

    def start(self, timeout: float = 90) -> None:
        """Start the node and wait until it serves metadata."""
        with self._log.open("ab") as out:
            self._proc = subprocess.Popen(
                ["java", *self._jvm(), "kafka.Kafka", str(self._config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the broker exited:\n{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                admin = KafkaAdminClient(
                    bootstrap_servers=self.bootstrap,
                    request_timeout_ms=2000,
                    bootstrap_timeout_ms=2000,
                )
                try:
                    if admin.describe_cluster()["brokers"]:
                        return
                finally:
                    admin.close()
            except Exception:  # noqa: BLE001 - any failure means "not yet"
                time.sleep(0.5)
        raise RuntimeError(f"the broker did not answer within {timeout:.0f} s:\n{self.log()}")

    def kill(self) -> None:
        """SIGKILL the node, as a crashed host would lose it."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait(timeout=30)

    def log(self) -> str:
        return self._log.read_text(errors="replace")[-5000:]
