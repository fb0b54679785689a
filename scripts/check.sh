#!/usr/bin/env bash
# Static checks: formatting, lint, strict types (the import contract is a unit test).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${INFERFLEET_VENV:-.venv}

"$venv/bin/ruff" format --check .
"$venv/bin/ruff" check .
"$venv/bin/mypy"
