#!/usr/bin/env bash
# Static checks: formatting, lint, strict types (the import contract is a unit test).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${INFERFLEET_VENV:-.venv}

"$venv/bin/ruff" format --check .
"$venv/bin/ruff" check .
"$venv/bin/mypy"
# The client distribution on its own, under its own configuration (strict as well).
"$venv/bin/mypy" --config-file client/pyproject.toml
# The model build scripts are scripts, not a package: checked one by one.
for script in models/*/build.py; do "$venv/bin/mypy" "$script"; done
