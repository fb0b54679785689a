"""Readiness, checked in the background: `/readyz` answers from the last check at once.

`Readiness.run` (a task of the app's lifespan) asks Postgres and Kafka every
`readiness_interval_s`, each check in a small thread pool of its own (never the
request threadpool) and given CHECK_TIMEOUT_S to answer. So an answer of `/readyz` is at
most `readiness_interval_s + CHECK_TIMEOUT_S` old (4 s by default); a report older than
twice that (the checks themselves are stuck) is not ready.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

log = logging.getLogger(__name__)

# How long one check may take before it counts as "no answer".
CHECK_TIMEOUT_S = 2.0
OK = "ok"


@dataclass(frozen=True)
class Report:
    """What each check answered (`ok`, or why not), and when (monotonic seconds)."""

    checks: dict[str, str]
    at: float

    @property
    def ready(self) -> bool:
        return all(answer == OK for answer in self.checks.values())


class Readiness:
    """Runs `checks` (name -> a blocking call answering `ok` or why not) periodically."""

    def __init__(
        self,
        checks: Mapping[str, Callable[[], str]],
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._checks = dict(checks)
        self._interval_s = interval_s
        self._clock = clock
        self._pool = ThreadPoolExecutor(2 * len(self._checks), thread_name_prefix="readiness")
        self._last: Report | None = None

    @property
    def max_age_s(self) -> float:
        """How old a report may be and still be answered."""
        return 2 * (self._interval_s + CHECK_TIMEOUT_S)

    async def check(self) -> Report:
        """Ask every check now, concurrently, and keep the answers."""
        loop = asyncio.get_running_loop()

        async def one(call: Callable[[], str]) -> str:
            try:
                return await asyncio.wait_for(
                    loop.run_in_executor(self._pool, call), CHECK_TIMEOUT_S
                )
            except TimeoutError:
                return f"unavailable: no answer within {CHECK_TIMEOUT_S:g} s"

        answers = await asyncio.gather(*(one(call) for call in self._checks.values()))
        report = Report(dict(zip(self._checks, answers, strict=True)), self._clock())
        if self._last is not None and report.ready != self._last.ready:
            log.warning("readiness is now %s: %s", report.ready, report.checks)
        self._last = report
        return report

    async def run(self) -> None:
        """Check every `interval_s`, for ever (cancel the task to stop)."""
        while True:
            await asyncio.sleep(self._interval_s)
            await self.check()

    def report(self) -> Report:
        """The last report; not ready if there is none yet or it is too old."""
        last, now = self._last, self._clock()
        if last is None:
            return Report({name: "unavailable: not checked yet" for name in self._checks}, now)
        age = now - last.at
        if age > self.max_age_s:
            stale = f"unavailable: last checked {age:.0f} s ago"
            return Report({name: stale for name in self._checks}, last.at)
        return last

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
