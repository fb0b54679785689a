"""How `inferfleet api` serves the app: uvicorn, in one process or several.

With `workers` > 1 uvicorn's supervisor binds the port once, starts that many processes
(each builds the app from `APP_FACTORY` and settings from the environment), restarts a
process that dies, and passes SIGTERM on to all of them. Their metrics are gathered
through prometheus-client's multiprocess mode: `metrics_folder` prepares the folder and
`serve` names it in `PROMETHEUS_MULTIPROC_DIR` before the processes start
(api.plumbing.metrics).
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from api.plumbing.metrics import MULTIPROCESS_ENV
from inferfleet.settings import Settings

# Import string of the app factory that each of several processes calls.
APP_FACTORY = "api.app:create_app"
APP_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def log_config() -> dict[str, Any]:
    """uvicorn's logging, plus the project's own loggers at INFO on stderr; applied in
    every process (logging set up before the processes start does not reach them)."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["app"] = {"format": APP_LOG_FORMAT}
    config["handlers"]["app"] = {
        "class": "logging.StreamHandler",
        "formatter": "app",
        "stream": "ext://sys.stderr",
    }
    config["root"] = {"handlers": ["app"], "level": "INFO"}
    return config


def server_options(host: str, port: int, workers: int) -> dict[str, Any]:
    """The uvicorn settings of `inferfleet api` (bench/api.py serves its bare app with
    the same): uvloop's event loop and httptools' HTTP parser, both dependencies, named
    so that a missing one fails at start instead of quietly serving slower."""
    return {
        "host": host,
        "port": port,
        "workers": workers,
        "loop": "uvloop",
        "http": "httptools",
        "log_config": log_config(),
        "log_level": "info",
    }


@contextmanager
def metrics_folder(configured: Path | None) -> Iterator[Path]:
    """The folder for the processes' metric files, emptied of any earlier run's: the
    configured one (created if missing; only its `*.db` files are removed), else a
    temporary one removed afterwards."""
    if configured is None:
        folder = Path(tempfile.mkdtemp(prefix="inferfleet-api-metrics-"))
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    configured.mkdir(parents=True, exist_ok=True)
    for stale in configured.glob("*.db"):
        stale.unlink()
    yield configured


def serve(settings: Settings, host: str, port: int, workers: int) -> None:
    """Serve the API until SIGTERM or SIGINT: in this process when `workers` is 1, else
    in `workers` processes sharing the port, with their metrics gathered."""
    options = server_options(host, port, workers)
    if workers == 1:
        from api.app import create_app  # here: a supervisor of several never builds the app

        uvicorn.run(create_app(settings), **options)
        return
    with metrics_folder(settings.api_metrics_dir) as folder:
        os.environ[MULTIPROCESS_ENV] = str(folder)
        uvicorn.run(APP_FACTORY, factory=True, **options)
