"""The `inferfleet-client` command (and `inferfleet jobs|batches`) as scripts run it: a
real process against a served API, workers and the scheduler; exit codes, `--json` and
`--quiet` output, progress on stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from inferfleet_client import Client
from tests.integration.conftest import ROOT, free_port, make_key
from tests.integration.test_client import scheduler  # noqa: F401 - a fixture used here
from tests.integration.test_jobs import random_inputs

pytestmark = pytest.mark.integration


class Command:
    """Runs the CLI as a process with the API's URL and a key in its environment."""

    def __init__(self, url: str, key: str) -> None:
        self.url = url
        self.env = {
            **os.environ,
            "INFERFLEET_URL": url,
            "INFERFLEET_API_KEY": key,
            "PYTHONPATH": os.pathsep.join([str(ROOT / "client" / "src"), str(ROOT)]),
        }

    def __call__(
        self, *args: str, module: str = "inferfleet_client"
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", module, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )


@pytest.fixture
def cli(api_url: str, engine: Engine) -> Command:
    return Command(api_url, make_key(engine, f"cli-{uuid.uuid4().hex[:10]}", "jobs"))


def test_jobs_are_submitted_read_and_waited_for_with_exit_codes_and_json(
    cli: Command, publish_model: Callable[..., Any], start_worker: Any, tmp_path: Path
) -> None:
    model = publish_model()
    start_worker(model.name).wait_ready()
    one, *many = random_inputs(21, 31)

    done = cli("jobs", "submit", model.name, "--inputs", json.dumps(one), "--wait", "--json")
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["status"] == "succeeded"
    assert set(job["outputs"]) == {"label", "probabilities"}

    got = cli("jobs", "get", job["id"], "--json")
    assert got.returncode == 0
    assert json.loads(got.stdout) == job
    quiet = cli("jobs", "get", job["id"], "-q")
    assert quiet.stdout == job["id"] + "\n"
    # The same command through the server's CLI.
    through = cli("jobs", "get", job["id"], "--json", module="inferfleet.cli")
    assert through.returncode == 0, through.stderr
    assert json.loads(through.stdout) == job

    lines = tmp_path / "many.jsonl"
    lines.write_text("".join(json.dumps(x) + "\n" for x in many))
    bulk = cli("jobs", "submit", model.name, "--inputs", f"@{lines}", "--wait")
    assert bulk.returncode == 0, bulk.stderr
    rows = [line.split("\t") for line in bulk.stdout.splitlines()]
    assert len(rows) == 20
    assert {r[1] for r in rows} == {"succeeded"}
    assert "waiting [" in bulk.stderr  # the progress line
    assert "20/20 jobs" in bulk.stderr


def test_errors_and_unfinished_jobs_have_exit_codes_of_their_own(
    cli: Command, publish_model: Callable[..., Any]
) -> None:
    model = publish_model()  # no worker: its jobs stay queued
    queued = cli("jobs", "submit", model.name, "--inputs", json.dumps(random_inputs(1, 5)[0]))
    assert queued.returncode == 0, queued.stderr
    job_id = queued.stdout.split("\t")[0]

    timed_out = cli("jobs", "wait", job_id, "--timeout", "0.5", "--json")
    assert timed_out.returncode == 4
    assert json.loads(timed_out.stdout)["status"] == "queued"
    with Client(cli.url, api_key=cli.env["INFERFLEET_API_KEY"]) as client:
        client.jobs.cancel(job_id)
    assert cli("jobs", "wait", job_id).returncode == 3
    assert cli("jobs", "get", job_id).returncode == 3

    missing = cli("jobs", "get", "job_" + "0" * 26)
    assert missing.returncode == 5
    assert "404" in missing.stderr
    invalid = {**random_inputs(1, 6)[0], "hour_of_day": "noon"}
    refused = cli("jobs", "submit", model.name, "--inputs", json.dumps(invalid))
    assert refused.returncode == 5
    assert "inputs.hour_of_day" in refused.stderr
    assert "'noon'" in refused.stderr

    assert cli("jobs", "submit", model.name, "--inputs", "{not json").returncode == 2
    assert cli("jobs", "frobnicate").returncode == 2
    away = cli("jobs", "get", job_id, "--url", f"http://127.0.0.1:{free_port()}",
               "--max-retries", "0")  # fmt: skip
    assert away.returncode == 6
    assert "no answer" in away.stderr


def test_a_local_file_becomes_a_batch_that_is_watched_to_its_end(
    cli: Command,
    scheduler: None,  # noqa: F811 - the fixture imported above
    publish_model: Callable[..., Any],
    start_worker: Any,
    tmp_path: Path,
) -> None:
    model = publish_model()
    start_worker(model.name).wait_ready()
    source = tmp_path / "lines.jsonl"
    inputs = random_inputs(200, 41)
    source.write_text("".join(
        json.dumps({"custom_id": f"c{n}", "inputs": x}) + "\n" for n, x in enumerate(inputs)
    ))  # fmt: skip

    created = cli("batches", "create", str(source), "--model", model.name, "--wait", "--json")
    assert created.returncode == 0, created.stderr
    batch = json.loads(created.stdout)
    assert batch["status"] == "completed"
    assert batch["counts"]["succeeded"] == 200
    assert "uploading [" in created.stderr
    assert f"{batch['id']} [" in created.stderr

    watched = cli("batches", "watch", batch["id"], "-q")
    assert watched.returncode == 0
    assert watched.stdout == batch["id"] + "\n"
    results = cli("batches", "results", batch["id"])
    assert results.returncode == 0
    lines = [json.loads(line) for line in results.stdout.splitlines()]
    assert [line["custom_id"] for line in lines] == [f"c{n}" for n in range(200)]
    assert cli("batches", "get", batch["id"]).returncode == 0
    assert cli("batches", "create", str(tmp_path / "absent.jsonl"), "--model", "m").returncode == 2
