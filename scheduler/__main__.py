"""`python -m scheduler worker|beat [celery options]` (`inferfleet scheduler`): run the
Celery worker or beat.

Anything after the command is passed to Celery (`--concurrency 2`, `--loglevel INFO`,
`-B` to embed beat in a worker for local runs); `… worker --help` and `… beat --help`
list Celery's options.
"""

from __future__ import annotations

import argparse
import logging
import sys

from inferfleet import tracing
from inferfleet.settings import load_settings
from scheduler.app import make_app


def parser() -> argparse.ArgumentParser:
    """The command line of `python -m scheduler`, which `inferfleet scheduler` runs; each
    command's options are Celery's, so they pass through unparsed."""
    p = argparse.ArgumentParser(
        prog="inferfleet scheduler",
        description="Run the scheduler's Celery worker or beat, on Redis (also: python -m "
        "scheduler). Everything else it reads from INFERFLEET_* settings (README.md, Settings).",
        epilog="Options after the command go to Celery; `inferfleet scheduler worker --help` "
        "and `inferfleet scheduler beat --help` list them all.",
        allow_abbrev=False,
    )
    commands = p.add_subparsers(dest="command", required=True, metavar="{worker,beat}")
    commands.add_parser(
        "worker",
        add_help=False,
        help="the Celery worker that runs webhook dispatch, batches and sweeps; takes Celery "
        "worker options: --concurrency N, --loglevel LEVEL, -B (embed beat, for local runs), …",
    )
    commands.add_parser(
        "beat",
        add_help=False,
        help="Celery beat, which starts dispatch passes, schedules, batch polls and sweeps on "
        "time (run exactly one); takes Celery beat options: --loglevel LEVEL, …",
    )
    return p


def main(argv: list[str]) -> int:
    args, celery_args = parser().parse_known_args(argv)
    argv = [args.command, *celery_args]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    tracing.setup("inferfleet-scheduler")  # before the pool forks: each child exports
    app = make_app(load_settings())
    app.start([*argv, "--loglevel", "INFO"] if "--loglevel" not in argv else argv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
