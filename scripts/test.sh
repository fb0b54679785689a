#!/usr/bin/env bash
# The whole test suite from nothing: install, bring the local stack up, run the static
# checks, then pytest (unit tests, and integration tests against the real services).
# Extra arguments go to pytest, e.g. `scripts/test.sh tests/unit -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${INFERFLEET_VENV:-.venv}

scripts/install.sh
scripts/stack.sh up
scripts/check.sh
"$venv/bin/python" -m pytest "$@"
