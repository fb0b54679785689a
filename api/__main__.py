"""`python -m api` (`inferfleet api`): serve the API with uvicorn, in one process or several."""

from __future__ import annotations

import argparse

from api.serving import serve
from inferfleet.settings import load_settings


def workers_count(value: str) -> int:
    """A `--workers` value: a whole number of processes, at least 1."""
    try:
        count = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--workers must be a whole number, not {value!r}"
        ) from None
    if count < 1:
        raise argparse.ArgumentTypeError(f"--workers must be at least 1, not {count}")
    return count


def parser() -> argparse.ArgumentParser:
    """The command line of `python -m api`, which `inferfleet api` runs."""
    p = argparse.ArgumentParser(
        prog="inferfleet api",
        description="Serve the inferfleet API with uvicorn (also: python -m api). "
        "Everything else it reads from INFERFLEET_* settings (README.md, Settings).",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default %(default)s)")
    p.add_argument(
        "--workers",
        type=workers_count,
        default=1,
        help="processes serving the port, each with its own connections and caches; their "
        "metrics are summed on /metrics (default %(default)s; about one per core)",
    )
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    # Settings are read here once, so a bad one fails before any process starts.
    serve(load_settings(), args.host, args.port, args.workers)


if __name__ == "__main__":
    main()
