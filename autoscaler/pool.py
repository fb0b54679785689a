"""Worker processes standing in for a Deployment's pods.

`scale(n)` sets the wanted count, as the scale subresource does; `reconcile()` makes the
processes follow, as the ReplicaSet controller does: it starts missing ones, sends
SIGTERM to the newest surplus ones (the worker then finishes its batch, commits, leaves
the group and exits 0), kills those still running `grace_s` after their SIGTERM (as
`terminationGracePeriodSeconds` does), and replaces a worker that exited on its own,
after a back-off that doubles per crash in a row (as a pod's restart back-off does).
A stopping worker no longer counts as a replica.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

RESTART_BACKOFF_S = 1.0
RESTART_BACKOFF_MAX_S = 60.0
# A worker that ran this long before exiting resets the crash back-off.
STABLE_AFTER_S = 60.0


@dataclass
class Replica:
    """One worker process; `stopping_since` is when it was sent SIGTERM."""

    number: int
    process: subprocess.Popen[bytes]
    started_at: float
    stopping_since: float | None = None
    log_file: IO[bytes] | None = None


class WorkerPool:
    """Runs `command` as many times as the scaled count asks, each with `env`."""

    def __init__(
        self,
        command: Sequence[str],
        env: Mapping[str, str],
        grace_s: float = 30.0,
        log_dir: Path | None = None,
        cwd: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._command = list(command)
        self._env = dict(env)
        self._grace_s = grace_s
        self._log_dir = log_dir
        self._cwd = cwd
        self._clock = clock
        self._replicas: list[Replica] = []
        self._wanted = 0
        self._started = 0
        self._crashes = 0
        self._next_start = 0.0

    @property
    def wanted(self) -> int:
        """The count last asked for: the scale subresource's spec.replicas."""
        return self._wanted

    @property
    def running(self) -> int:
        """Processes that run and were not asked to stop: status.replicas."""
        return sum(1 for r in self._replicas if r.stopping_since is None)

    @property
    def stopping(self) -> int:
        """Processes draining after SIGTERM."""
        return sum(1 for r in self._replicas if r.stopping_since is not None)

    def scale(self, replicas: int) -> None:
        """Ask for `replicas` workers; `reconcile()` makes it so."""
        self._wanted = max(0, replicas)

    def reconcile(self) -> None:
        """Reap exited workers, then start, stop or kill processes toward the wanted count."""
        now = self._clock()
        self._reap(now)
        live = [r for r in self._replicas if r.stopping_since is None]
        if len(live) < self._wanted and now >= self._next_start:
            for _ in range(self._wanted - len(live)):
                self._start(now)
        surplus = len(live) - self._wanted
        if surplus > 0:
            for replica in sorted(live, key=lambda r: r.started_at, reverse=True)[:surplus]:
                log.info(
                    "worker %d (pid %d): SIGTERM, draining", replica.number, replica.process.pid
                )
                replica.process.send_signal(signal.SIGTERM)
                replica.stopping_since = now
        for replica in self._replicas:
            since = replica.stopping_since
            if since is not None and now - since > self._grace_s and replica.process.poll() is None:
                log.warning(
                    "worker %d (pid %d) still running %.0f s after SIGTERM; killing it",
                    replica.number,
                    replica.process.pid,
                    self._grace_s,
                )
                replica.process.kill()

    def _reap(self, now: float) -> None:
        kept = []
        for replica in self._replicas:
            code = replica.process.poll()
            if code is None:
                kept.append(replica)
                continue
            if replica.log_file is not None:
                replica.log_file.close()
            if replica.stopping_since is not None:
                log.info("worker %d stopped (exit code %d)", replica.number, code)
                continue
            if now - replica.started_at >= STABLE_AFTER_S:
                self._crashes = 0
            self._crashes += 1
            delay = min(RESTART_BACKOFF_S * 2 ** (self._crashes - 1), RESTART_BACKOFF_MAX_S)
            self._next_start = now + delay
            log.error(
                "worker %d exited on its own (exit code %d); replacing it in %.0f s",
                replica.number,
                code,
                delay,
            )
        self._replicas = kept

    def _start(self, now: float) -> None:
        self._started += 1
        number = self._started
        log_file: IO[bytes] | None = None
        if self._log_dir is not None:
            self._log_dir.mkdir(parents=True, exist_ok=True)
            log_file = (self._log_dir / f"worker-{number}.log").open("ab")
        process = subprocess.Popen(
            self._command,
            env=self._env,
            cwd=self._cwd,
            stdout=log_file,
            stderr=subprocess.STDOUT if log_file is not None else None,
        )
        self._replicas.append(Replica(number, process, now, log_file=log_file))
        log.info("worker %d started (pid %d)", number, process.pid)

    def shutdown(self) -> None:
        """SIGTERM every worker, wait up to the grace period, kill what still runs."""
        self.scale(0)
        self.reconcile()
        deadline = self._clock() + self._grace_s
        while self._replicas and self._clock() < deadline:
            time.sleep(0.1)
            self._reap(self._clock())
        for replica in self._replicas:
            if replica.process.poll() is None:
                log.warning("worker %d did not drain in time; killing it", replica.number)
                replica.process.kill()
            replica.process.wait()
            if replica.log_file is not None:
                replica.log_file.close()
        self._replicas = []
