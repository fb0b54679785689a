"""The fault suite (`pytest -m faults tests/faults`, run by scripts/test.sh after the
main suite): faults injected into a fleet under load, each audited for lost and doubled
jobs and webhook events.

It breaks only what it starts: its own three-node Kafka cluster and Postgres cluster
(`scripts/stack.sh kafka3` in `.stack/faults/`, `pgtemp` in a temporary folder, both
on free ports), and per test its own API, workers, scheduler and webhook receiver.
Redis and S3 are the shared stack's, untouched by any fault. A service that does not
come up stops the run with its output, never a silent skip. Each fault's numbers are
printed at the end of the run and written to `.stack/logs/fault-report.json`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from inferfleet.clients.db import make_engine
from inferfleet.clients.objectstore import make_s3_client
from inferfleet.settings import Settings, load_settings
from tests.builds import fraud_build
from tests.faults.fleet import REPORT, Fleet, fleet_env, start_fleet
from tests.faults.services import ROOT, PrivateStack
from tests.integration.conftest import prepare_database

FOLDER = ROOT / ".stack" / "faults"
REPORT_PATH = ROOT / ".stack" / "logs" / "fault-report.json"


@pytest.fixture(scope="session")
def stack() -> Iterator[PrivateStack]:
    """Three Kafka nodes and a Postgres cluster of the session's own, fresh each run."""
    shutil.rmtree(FOLDER, ignore_errors=True)
    FOLDER.mkdir(parents=True)
    private = PrivateStack(FOLDER, Path(tempfile.mkdtemp(prefix="inferfleet-pgtemp-")))
    try:
        print(private.stack("kafka3", "up"))
        print(private.stack("pgtemp", "up"))
    except (RuntimeError, OSError) as e:
        teardown(private)
        pytest.exit(f"the fault suite's services did not start: {e}", returncode=3)
    yield private
    teardown(private)


def teardown(private: PrivateStack) -> None:
    for args in (("kafka3", "down"), ("pgtemp", "down")):
        try:
            private.stack(*args)
        except (RuntimeError, OSError) as e:
            print(e)
    shutil.rmtree(private.pg_folder, ignore_errors=True)


@pytest.fixture(scope="session")
def settings(stack: PrivateStack) -> Settings:
    """The settings the fleet runs with, as the test process reads them."""
    values = {k.removeprefix("INFERFLEET_").lower(): v for k, v in fleet_env(stack).items()}
    return load_settings(**values, model_cache_dir=FOLDER / "publisher-cache")


@pytest.fixture(scope="session")
def engine(settings: Settings) -> Iterator[Engine]:
    """The private database, migrated, with the audit trigger of terminal writes."""
    engine = make_engine(settings)
    prepare_database(engine, settings.database_url.get_secret_value())
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def s3(settings: Settings) -> Any:
    client = make_s3_client(settings)
    try:
        client.head_bucket(Bucket=settings.s3_bucket)
    except Exception as e:  # noqa: BLE001 - any failure: the shared stack is not up
        pytest.exit(f"S3 at {settings.s3_endpoint_url}: {e!r} (scripts/stack.sh up)", 3)
    return client


@pytest.fixture(scope="session")
def fraud_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fraud-package")
    fraud_build().build(out)
    return out


@pytest.fixture
def fleet(
    request: pytest.FixtureRequest,
    stack: PrivateStack,
    settings: Settings,
    engine: Engine,
    s3: Any,
    fraud_package: Path,
) -> Iterator[Fleet]:
    """This test's fleet; its logs stay in `.stack/faults/<test>/`."""
    folder = FOLDER / request.node.name
    folder.mkdir()
    running = start_fleet(stack, settings, engine, s3, fraud_package, folder)
    yield running
    running.stop()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not REPORT:
        return
    REPORT_PATH.parent.mkdir(parents=True, exist_ok=True)
    REPORT_PATH.write_text(json.dumps(REPORT, indent=2) + "\n")
    terminalreporter.section("fault report")
    for entry in REPORT:
        terminalreporter.write_line(json.dumps(entry))
