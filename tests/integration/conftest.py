"""Fixtures over the real local stack (`scripts/stack.sh up`): Kafka, Postgres, S3.

Each service is checked once per session against a deadline; one that does not answer
stops the whole run with its log tail, never a silent skip. Tests are isolated by name:
each publishes its own model (so its own topics and consumer group) into the
`inferfleet_test` database and looks only at its own jobs.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from alembic.config import Config
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient
from sqlalchemy import Engine, text

from alembic import command
from api.app import create_app
from inferfleet.clients.db import make_engine
from inferfleet.clients.objectstore import make_s3_client
from inferfleet.clients.topics import job_topic
from inferfleet.jobs import messages
from inferfleet.jobs.messages import JobMessage
from inferfleet.models.publish import publish
from inferfleet.models.registry import ModelVersion
from inferfleet.settings import Settings, load_settings
from inferfleet.tables import jobs
from inferfleet.tenants import keys
from tests.builds import fraud_build

ROOT = Path(__file__).resolve().parents[2]
LOGS = ROOT / ".stack" / "logs"
TEST_DATABASE_URL = os.environ.get(
    "INFERFLEET_TEST_DATABASE_URL",
    "postgresql+psycopg://inferfleet:inferfleet@127.0.0.1:5432/inferfleet_test",
)

# Records every write that leaves a job in a terminal state, so tests can prove that no
# job is answered twice. Test instrumentation only: it lives in the test database.
AUDIT_SQL = """
CREATE TABLE IF NOT EXISTS test_terminal_writes (
    job_id text NOT NULL, status text NOT NULL, at timestamptz NOT NULL DEFAULT now());
CREATE OR REPLACE FUNCTION test_audit_terminal() RETURNS trigger AS $$
BEGIN
    IF NEW.status IN ('succeeded', 'failed', 'cancelled', 'expired') THEN
        INSERT INTO test_terminal_writes (job_id, status) VALUES (NEW.id, NEW.status);
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS test_audit_terminal ON jobs;
CREATE TRIGGER test_audit_terminal AFTER UPDATE ON jobs
    FOR EACH ROW EXECUTE FUNCTION test_audit_terminal();
"""


def _log_tail(name: str, lines: int = 40) -> str:
    path = LOGS / name
    if not path.exists():
        return f"(no log at .stack/logs/{name})"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def wait_for(check: Callable[[], Any], what: str, timeout: float, log: str | None = None) -> Any:
    """Call `check` until it returns a truthy value; stop the run if `timeout` passes."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as e:  # noqa: BLE001 - any failure means "not yet"
            last = e
        time.sleep(0.2)
    tail = f"\n--- {log} ---\n{_log_tail(log)}" if log else ""
    pytest.exit(f"{what} did not answer within {timeout:.0f} s: {last!r}{tail}", returncode=3)


def eventually(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """Drain-style wait inside a test: poll `check` until truthy, fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return load_settings(
        database_url=TEST_DATABASE_URL,
        model_cache_dir=tmp_path_factory.mktemp("publisher-cache"),
        topic_partitions=4,
        # Tests post thousands of requests with one key; test_limits.py checks the limit.
        rate_limit="1000000/second",
    )


def prepare_database(engine: Engine, url: str) -> None:
    """Migrate the database at `url` to the head and add the audit of terminal writes."""
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["database_url"] = url
    command.upgrade(config, "head")
    with engine.begin() as conn:
        conn.exec_driver_sql(AUDIT_SQL)


@pytest.fixture(scope="session")
def engine(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings)

    def postgres() -> bool:
        with engine.connect() as conn:
            return conn.execute(text("SELECT 1")).scalar_one() == 1

    wait_for(postgres, "Postgres at 127.0.0.1:5432 (inferfleet_test)", 30, "postgres.log")
    prepare_database(engine, TEST_DATABASE_URL)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def kafka(settings: Settings) -> str:
    def metadata() -> bool:
        admin = KafkaAdminClient(
            bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=3000
        )
        try:
            return bool(admin.describe_cluster()["brokers"])
        finally:
            admin.close()

    wait_for(metadata, f"Kafka at {settings.kafka_bootstrap}", 60, "kafka.out")
    return settings.kafka_bootstrap


@pytest.fixture(scope="session")
def s3(settings: Settings) -> Any:
    client = make_s3_client(settings)
    wait_for(
        lambda: client.head_bucket(Bucket=settings.s3_bucket) is not None,
        f"S3 at {settings.s3_endpoint_url} (bucket {settings.s3_bucket})",
        30,
        "moto.log",
    )
    return client


@pytest.fixture(scope="session")
def fraud_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo fraud package, built once per session from the project's own script."""
    out = tmp_path_factory.mktemp("fraud-package")
    fraud_build().build(out)
    return out


PublishModel = Callable[..., ModelVersion]


@pytest.fixture
def publish_model(
    settings: Settings, engine: Engine, s3: Any, kafka: str, fraud_package: Path
) -> PublishModel:
    """Publish the fraud package under a name of this test's own; returns the version."""

    def _publish(alias: str | None = "production", name: str | None = None) -> ModelVersion:
        name = name or f"t-{uuid.uuid4().hex[:10]}"
        return publish(settings, engine, s3, fraud_package, name=name, alias=alias)

    return _publish


@dataclass
class WorkerProcess:
    """A real `python -m worker` process and how to reach it."""

    model: str
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes]
    env: dict[str, str] = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def readyz(self) -> httpx.Response:
        return httpx.get(f"{self.url}/readyz", timeout=2)

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                pytest.fail(f"worker exited with {self.proc.returncode}:\n{self.log()}")
            try:
                return self.readyz().status_code == 200
            except httpx.TransportError:
                return False

        eventually(ready, f"worker for {self.model} to be ready", timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def start_worker(
    settings: Settings, tmp_path: Path, kafka: str
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start workers as real processes; any still running at teardown are killed."""
    started: list[WorkerProcess] = []

    def _start(model: str, group: str | None = None, **env: str) -> WorkerProcess:
        port = free_port()
        log_path = tmp_path / f"worker-{len(started)}.log"
        full_env = {
            **os.environ,
            "INFERFLEET_DATABASE_URL": TEST_DATABASE_URL,
            "INFERFLEET_WORKER_MODELS": json.dumps([model]),
            "INFERFLEET_WORKER_GROUP": group or f"workers-{model}",
            "INFERFLEET_WORKER_HTTP_PORT": str(port),
            "INFERFLEET_MODEL_CACHE_DIR": str(tmp_path / "worker-cache"),
            "INFERFLEET_TOPIC_PARTITIONS": str(settings.topic_partitions),
            "INFERFLEET_INTRA_OP_THREADS": "1",
            **env,
        }
        log_file = log_path.open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker"],
            cwd=ROOT,
            env=full_env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        log_file.close()
        worker = WorkerProcess(model, port, log_path, proc, full_env)
        started.append(worker)
        return worker

    yield _start
    for worker in started:
        if worker.proc.poll() is None:
            worker.proc.send_signal(signal.SIGKILL)
            worker.proc.wait(timeout=10)


@dataclass
class SchedulerProcess:
    """A real `python -m scheduler worker -B` process (Celery with embedded beat)."""

    log_path: Path
    proc: subprocess.Popen[bytes]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Terminate it (killed after 30 s); print its log if it did not exit cleanly."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.returncode not in (0, -signal.SIGTERM):
            print(self.log())


def start_scheduler(
    folder: Path,
    name: str,
    env: dict[str, str],
    *,
    concurrency: int = 2,
    args: Sequence[str] = (),
) -> SchedulerProcess:
    """Start a scheduler on the test database, `env` over this environment.

    Its log is `folder/<name>.log` and its beat schedule file `folder/<name>-beat-schedule`.
    """
    log_path = folder / f"{name}.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "scheduler",
                "worker",
                "-B",
                "--concurrency",
                str(concurrency),
                *args,
                "--schedule-filename",
                str(folder / f"{name}-beat-schedule"),
            ],
            cwd=ROOT,
            env={**os.environ, "INFERFLEET_DATABASE_URL": TEST_DATABASE_URL, **env},
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    return SchedulerProcess(log_path, proc)


def serve_app(settings: Settings) -> Iterator[str]:
    """Serve `create_app(settings)` with uvicorn on a free port in a thread; yields its URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name=f"api-{port}", daemon=True)
    thread.start()
    eventually(lambda: server.started, "the API server to start", 20)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="session")
def api_url(settings: Settings, engine: Engine, kafka: str, s3: Any) -> Iterator[str]:
    """The API on real HTTP, against the test database and the real Kafka."""
    yield from serve_app(settings)


def make_key(engine: Engine, tenant: str, scope: str) -> str:
    """A new API key for `tenant` with `scope`."""
    with engine.begin() as conn:
        return keys.create_key(conn, tenant, scope).key


@pytest.fixture(scope="session")
def admin_key(engine: Engine) -> str:
    """An admin key of a tenant of this session's own."""
    return make_key(engine, f"t-{uuid.uuid4().hex[:10]}", "admin")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def client(api_url: str, admin_key: str) -> Iterator[httpx.Client]:
    """An HTTP client of the API, authenticated with the session's admin key."""
    with httpx.Client(base_url=api_url, timeout=30, headers=bearer(admin_key)) as c:
        yield c


def enqueue_forged(engine: Engine, settings: Settings, job: JobMessage) -> str:
    """Write `job`'s queued row and produce its message, as the API would, but without the
    API's checks: for messages a worker must not trust. Returns the job ID."""
    with engine.begin() as conn:
        conn.execute(
            jobs.insert().values(
                id=job.job_id,
                tenant=job.tenant,
                model=job.model,
                version=job.version,
                status="queued",
                lane="interactive",
                inputs=job.inputs,
                input_uri=job.input_uri,
            )
        )
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    producer.send(job_topic(job.model), key=job.job_id.encode(), value=messages.encode(job))
    producer.flush()
    producer.close()
    return job.job_id


def job_rows(engine: Engine, model: str) -> list[Any]:
    """Every job row of `model`."""
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT * FROM jobs WHERE model = :m"), {"m": model}))


def terminal_writes(engine: Engine, job_ids: list[str]) -> dict[str, int]:
    """How many times each job was written into a terminal state."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT job_id, count(*) AS n FROM test_terminal_writes "
                "WHERE job_id = ANY(:ids) GROUP BY job_id"
            ),
            {"ids": job_ids},
        )
        return {r.job_id: r.n for r in rows}


def serve_built(app: Any) -> Iterator[str]:
    """Serve an app the test built (and may reach into) like `serve_app`; yields its URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name=f"api-{port}", daemon=True)
    thread.start()
    eventually(lambda: server.started, "the API server to start", 20)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Any]:
    """A broker of this test's own (`tests.integration.ownbroker.OwnBroker`), which it
    may kill; the shared one is never touched."""
    from tests.integration.ownbroker import OwnBroker, kafka_libs  # it imports this module

    libs = kafka_libs()
    if libs is None:
        pytest.fail("no Kafka jars under .stack/kafka/libs: run scripts/stack.sh up first")
    broker = OwnBroker(tmp_path / "own-broker", libs)
    broker.start()
    yield broker
    broker.kill()


@dataclass
class ApiProcess:
    """A real `python -m api` process: its URL, its log and the process."""

    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path


def serve_process(log_path: Path, env: dict[str, str], *args: str) -> Iterator[ApiProcess]:
    """Run `python -m api` (with `args`) on a free port, `env` over this environment and
    the test database, until its `/readyz` answers 200; kill it afterwards."""
    port = free_port()
    full_env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "INFERFLEET_DATABASE_URL": TEST_DATABASE_URL,
        **env,
    }
    full_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "api", "--port", str(port), *args],
            cwd=ROOT,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    served = ApiProcess(f"http://127.0.0.1:{port}", proc, log_path)

    def ready() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"the API exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            return httpx.get(f"{served.url}/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        eventually(ready, "the API's processes to be ready", 60)
        yield served
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
