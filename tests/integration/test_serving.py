"""`inferfleet api --workers 2`: two processes on one port, and /metrics counts for both.

The API runs as a real command on a port of its own, against the test database and the
real Kafka; requests go on fresh connections so that the kernel hands them to either
process. Which process answered a request is read from each process's own metric file.
"""

from __future__ import annotations

import platform
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from inferfleet import __version__
from tests.integration.conftest import (
    PublishModel,
    bearer,
    eventually,
    make_key,
    serve_process,
)

pytestmark = pytest.mark.integration

SUBMITTED = "inferfleet_api_jobs_submitted_total"
REQUESTS = "inferfleet_api_request_duration_seconds_count"
INPUTS = {
    "transaction_amount": 245.5,
    "merchant_category": "electronics",
    "user_account_age_days": 847,
    "hour_of_day": 14,
}
ROUND = 16  # requests sent at once, each on its own connection
MOST = 50 * ROUND  # the kernel spreads connections; this many without both answering fails


@dataclass
class Served:
    url: str
    metrics_dir: Path
    proc: subprocess.Popen[bytes]
    log_path: Path


@pytest.fixture
def two_processes(tmp_path: Path, kafka: str) -> Iterator[Served]:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_1.db").write_bytes(b"a file of an earlier run")
    env = {
        "INFERFLEET_RATE_LIMIT": "1000000/second",
        "INFERFLEET_API_METRICS_DIR": str(metrics_dir),
    }
    for api in serve_process(tmp_path / "api.log", env, "--workers", "2"):
        yield Served(api.url, metrics_dir, api.proc, api.log_path)


def per_process(metrics_dir: Path, model: str) -> dict[int, float]:
    """Jobs submitted for `model`, by the process that counted them (its counter file)."""
    counted: dict[int, float] = {}
    for path in metrics_dir.glob("counter_*.db"):
        one = metrics_dir.parent / f"one-{path.stem}"
        one.mkdir(exist_ok=True)
        shutil.copy(path, one / path.name)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(one))
        value = registry.get_sample_value(SUBMITTED, {"model": model})
        counted[int(path.stem.split("_")[1])] = value or 0.0
    return counted


def scrape(url: str) -> dict[str, list[Any]]:
    """Every sample of /metrics, by metric name: [(labels, value), ...]."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    samples: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(s.name, []).append((s.labels, s.value))
    return samples


def test_metrics_count_the_requests_of_every_process(
    two_processes: Served, publish_model: PublishModel, engine: Engine
) -> None:
    version = publish_model()
    key = make_key(engine, f"t-{uuid.uuid4().hex[:10]}", "jobs")
    body = {"model": version.name, "inputs": INPUTS}
    url = two_processes.url
    assert not (two_processes.metrics_dir / "counter_1.db").exists(), "earlier files are wiped"

    def submit(_: int) -> int:
        # No shared client: a new connection each time, for either process to accept.
        return httpx.post(f"{url}/v1/jobs", json=body, headers=bearer(key), timeout=30).status_code

    sent = 0
    with ThreadPoolExecutor(ROUND) as pool:
        while (
            sum(1 for n in per_process(two_processes.metrics_dir, version.name).values() if n) < 2
        ):
            assert sent < MOST, f"{sent} requests all went to one process"
            assert list(pool.map(submit, range(ROUND))) == [202] * ROUND
            sent += ROUND
    assert sum(per_process(two_processes.metrics_dir, version.name).values()) == sent

    # A request is timed once its response is sent, so the last may land a moment later.
    posted = ({"method": "POST", "route": "/v1/jobs", "status": "202"}, float(sent))
    eventually(lambda: posted in scrape(url)[REQUESTS], "every POST timed")
    build = {"version": __version__, "python": platform.python_version()}
    # Whichever process answers the scrape reports both processes' submissions, and one
    # value of each gauge (the largest of the live processes), not one per process.
    for _ in range(10):
        samples = scrape(url)
        assert samples[SUBMITTED] == [({"model": version.name}, float(sent))]
        assert posted in samples[REQUESTS]
        assert samples["inferfleet_api_rate_limit_fallback"] == [({}, 0.0)]
        assert samples["inferfleet_build_info"] == [(build, 1.0)]

    two_processes.proc.send_signal(signal.SIGTERM)
    assert two_processes.proc.wait(timeout=60) == 0, two_processes.log_path.read_text()
    # Each process marked itself dead as it ended: no live gauge of it is left behind.
    assert list(two_processes.metrics_dir.glob("gauge_live*")) == []
    assert sorted(per_process(two_processes.metrics_dir, version.name).values())[0] > 0
