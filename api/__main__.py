"""`python -m api`: serve the API with uvicorn."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from api.app import create_app
from inferfleet.settings import load_settings


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m api", description="Serve the inferfleet API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    uvicorn.run(create_app(load_settings()), host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
