"""`python -m worker` (`inferfleet worker`): run one worker until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import signal

from inferfleet import tracing
from inferfleet.clients.db import make_engine
from inferfleet.clients.objectstore import make_s3_client
from inferfleet.settings import load_settings
from worker import logs
from worker.health import Readiness, serve
from worker.main import Worker
from worker.metrics import QueueProbe, WorkerMetrics
from worker.modelstore import ModelStore, check_bound


def parser() -> argparse.ArgumentParser:
    """The command line of `python -m worker`, which `inferfleet worker` runs."""
    return argparse.ArgumentParser(
        prog="inferfleet worker",
        description="Run one worker until SIGTERM or SIGINT (also: python -m worker): load "
        "the served models, then poll their job topics, run the jobs and write the results.",
        epilog="It takes no options of its own: INFERFLEET_* settings (README.md, Settings) "
        "configure it, chiefly INFERFLEET_WORKER_MODELS (the models it serves), "
        "INFERFLEET_WORKER_GROUP (its consumer group), INFERFLEET_WORKER_HTTP_HOST and "
        "INFERFLEET_WORKER_HTTP_PORT (/healthz, /readyz, /metrics), INFERFLEET_PROVIDERS "
        "(ONNX Runtime execution providers) and INFERFLEET_MAX_ATTEMPTS.",
    )


def main(argv: list[str] | None = None) -> None:
    """`python -m worker`: run one worker until SIGTERM or SIGINT, then exit 0."""
    parser().parse_args(argv)
    settings = load_settings()
    check_bound(settings)
    logs.configure()
    tracing.setup("inferfleet-worker")
    # A connection for each lane's execution thread, the loop's and the probes'. Not
    # pinged before each transaction (an interactive job's claim and result are two): a
    # connection a Postgres restart killed fails its statement, which the loop handles
    # as the outage it is (`worker.main`), and the engine then drops the others.
    engine = make_engine(settings, pool_size=4, pre_ping=False)
    metrics = WorkerMetrics()
    readiness = Readiness()
    server = serve(
        settings.worker_http_host, settings.worker_http_port, readiness, metrics.registry
    )
    s3 = make_s3_client(settings)
    store = ModelStore(settings, engine, s3)
    worker = Worker(settings, engine, store, metrics, readiness, s3=s3)
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    signal.signal(signal.SIGINT, lambda *_: worker.stop())
    probe = QueueProbe(settings, metrics)  # lag, oldest job and drain time, for /metrics
    probe.start()
    try:
        worker.run()
    finally:
        probe.stop()
        server.shutdown()
        store.close()
        engine.dispose()


if __name__ == "__main__":
    main()
