"""`python -m scheduler worker|beat [celery options]`: run the Celery worker or beat.

Anything after the command is passed to Celery (`--concurrency 2`, `--loglevel INFO`,
`-B` to embed beat in a worker for local runs).
"""

from __future__ import annotations

import logging
import sys

from inferfleet.settings import load_settings
from scheduler.app import make_app


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("worker", "beat"):
        print("usage: python -m scheduler worker|beat [celery options]", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = make_app(load_settings())
    app.start([*argv, "--loglevel", "INFO"] if "--loglevel" not in argv else argv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
