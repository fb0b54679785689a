#!/usr/bin/env bash
# The main job, end to end, on a fresh machine: install, bring the local stack up,
# migrate, build the demo fraud model and publish it to S3, start the API and a worker,
# submit jobs over HTTP, wait for them, print results and throughput. The API and the
# worker stop when the demo ends; the stack keeps running (scripts/stack.sh down).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${INFERFLEET_VENV:-.venv}
logs=.stack/logs

scripts/install.sh
scripts/stack.sh up
"$venv/bin/inferfleet" db upgrade
"$venv/bin/python" models/fraud/build.py build/models/fraud
"$venv/bin/inferfleet" models publish build/models/fraud --if-changed
# A key of the demo's own tenant; the CLI prints it once, as JSON.
key=$("$venv/bin/inferfleet" keys create --tenant demo --scope jobs |
    "$venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["key"])')

free_port() { "$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
api_port=${INFERFLEET_DEMO_API_PORT:-$(free_port)}
worker_port=$(free_port)
mkdir -p "$logs"

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

"$venv/bin/inferfleet" api --port "$api_port" > "$logs/demo-api.log" 2>&1 &
pids+=($!)
INFERFLEET_WORKER_HTTP_PORT=$worker_port "$venv/bin/inferfleet" worker > "$logs/demo-worker.log" 2>&1 &
pids+=($!)
echo "demo: API on 127.0.0.1:$api_port, worker probes on 127.0.0.1:$worker_port (logs in $logs/)"

INFERFLEET_DEMO_KEY=$key "$venv/bin/python" scripts/demo_client.py \
    --api "http://127.0.0.1:$api_port" --worker "http://127.0.0.1:$worker_port" "$@"
