"""`python -m api` (`inferfleet api`): serve the API with uvicorn."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from api.app import create_app
from inferfleet.settings import load_settings


def parser() -> argparse.ArgumentParser:
    """The command line of `python -m api`, which `inferfleet api` runs."""
    p = argparse.ArgumentParser(
        prog="inferfleet api",
        description="Serve the inferfleet API with uvicorn (also: python -m api). "
        "Everything else it reads from INFERFLEET_* settings (README.md, Settings).",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default %(default)s)")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    uvicorn.run(create_app(load_settings()), host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
