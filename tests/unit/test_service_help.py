"""Every service command answers --help with its own options, and starts nothing to do so.

Each command runs as a process with every service it could reach pointing at a closed
port: a command that started its service instead would hang retrying, fail, or answer
without its options.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from inferfleet.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
NOWHERE = {
    "INFERFLEET_KAFKA_BOOTSTRAP": "127.0.0.1:1",
    "INFERFLEET_DATABASE_URL": "postgresql+psycopg://nobody:nothing@127.0.0.1:1/none",
    "INFERFLEET_REDIS_URL": "redis://127.0.0.1:1/0",
    "INFERFLEET_S3_ENDPOINT_URL": "http://127.0.0.1:1",
    "INFERFLEET_WORKER_HTTP_PORT": "0",
}
CLI = ("-m", "inferfleet.cli")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERFLEET_")}
    env.update(NOWHERE, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "usage", "options"),
    [
        ((*CLI, "api", "--help"), "inferfleet api", ["--host", "--port", "--workers"]),
        (("-m", "api", "--help"), "inferfleet api", ["--host", "--port", "--workers"]),
        ((*CLI, "worker", "--help"), "inferfleet worker", ["INFERFLEET_WORKER_MODELS"]),
        (("-m", "worker", "--help"), "inferfleet worker", ["INFERFLEET_WORKER_MODELS"]),
        ((*CLI, "scheduler", "--help"), "inferfleet scheduler", ["worker", "beat", "-B"]),
        (("-m", "scheduler", "--help"), "inferfleet scheduler", ["worker", "beat", "-B"]),
        ((*CLI, "scheduler", "worker", "--help"), "scheduler worker", ["--concurrency"]),
        (("-m", "scheduler", "beat", "--help"), "scheduler beat", ["--schedule"]),
        ((*CLI, "autoscale", "--help"), "inferfleet autoscale", ["--scaled-object"]),
        (("-m", "autoscaler", "--help"), "inferfleet autoscale", ["--scaled-object"]),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, tuple) else None,
)
def test_help_lists_the_options_and_starts_nothing(
    args: tuple[str, ...], usage: str, options: list[str]
) -> None:
    done = run(*args)
    assert done.returncode == 0, done.stderr
    assert usage in done.stdout.splitlines()[0].casefold()
    for option in options:
        assert option in done.stdout
    assert done.stderr == ""


def test_the_settings_the_worker_help_names_exist() -> None:
    named = re.findall(r"INFERFLEET_([A-Z_]+)", run("-m", "worker", "--help").stdout)
    assert named
    assert {name.lower() for name in named} <= set(Settings.model_fields)


@pytest.mark.parametrize("args", [("-m", "scheduler"), ("-m", "scheduler", "flower")])
def test_the_scheduler_refuses_a_missing_or_unknown_command(args: tuple[str, ...]) -> None:
    done = run(*args)
    assert done.returncode == 2
    assert "{worker,beat}" in done.stderr
