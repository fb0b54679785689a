#!/usr/bin/env bash
# The whole test suite from nothing: install, bring the local stack up, run the static
# checks, then pytest (unit tests, and integration tests against the real services),
# then the fault suite (tests/faults, `-m faults`: its own three-node Kafka and Postgres,
# each fault under 20,000 jobs), which must end within FAULTS_TIMEOUT_S (default 1500).
# Extra arguments go to pytest instead, and then the fault suite does not run, e.g.
# `scripts/test.sh tests/unit -x`, or `scripts/test.sh -m faults tests/faults` for it alone.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${INFERFLEET_VENV:-.venv}

scripts/install.sh
scripts/stack.sh up
scripts/check.sh
if (($#)); then
    "$venv/bin/python" -m pytest "$@"
    exit
fi
"$venv/bin/python" -m pytest
# SIGINT first: pytest then tears its fixtures down, which stops the suite's own services.
timeout -s INT -k 60 "${FAULTS_TIMEOUT_S:-1500}" \
    "$venv/bin/python" -m pytest -m faults tests/faults
