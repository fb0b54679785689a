#!/usr/bin/env bash
# The main job, end to end, on a fresh machine: install, bring the local stack up,
# migrate, build the demo fraud model and publish it to S3, start the API, a worker and
# the webhook dispatcher, submit jobs over HTTP (some with webhooks to a receiver of the
# demo's own), wait for them and for their signed webhooks, print results and
# throughput. The services stop when the demo ends; the stack keeps running
# (scripts/stack.sh down).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${INFERFLEET_VENV:-.venv}
logs=.stack/logs

scripts/install.sh
scripts/stack.sh up
"$venv/bin/inferfleet" db upgrade
"$venv/bin/python" models/fraud/build.py build/models/fraud
"$venv/bin/inferfleet" models publish build/models/fraud --if-changed
# A key of the demo's own tenant; the CLI prints it once, as JSON, with the tenant's
# webhook secret.
made=$("$venv/bin/inferfleet" keys create --tenant demo --scope jobs)
field() { "$venv/bin/python" -c "import json, sys; print(json.load(sys.stdin)['$1'])" <<< "$made"; }
key=$(field key)
secret=$(field webhook_secret)
# The demo's webhook receiver listens on 127.0.0.1, which webhooks may only target
# when allowlisted.
export INFERFLEET_WEBHOOK_ALLOWLIST=127.0.0.1
# One key does the work of many clients here: reading 10,000 jobs back passes the
# default 1000/second per key, and each 429 would cost its reader a second.
export INFERFLEET_RATE_LIMIT=${INFERFLEET_RATE_LIMIT:-10000/second}

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

# Two API processes, one per core of a small machine (README: "Serving with several
# processes").
"$venv/bin/inferfleet" api --port "$api_port" --workers 2 > "$logs/demo-api.log" 2>&1 &
pids+=($!)
INFERFLEET_WORKER_HTTP_PORT=$worker_port "$venv/bin/inferfleet" worker > "$logs/demo-worker.log" 2>&1 &
pids+=($!)
# The scheduler: one Celery worker on Redis with beat embedded, consuming both queues
# (`webhooks` for deliveries, `celery` for ingest, sweeps and schedules; keda/ splits them).
"$venv/bin/inferfleet" scheduler worker -B --concurrency 2 \
    --schedule-filename .stack/demo-beat-schedule > "$logs/demo-scheduler.log" 2>&1 &
pids+=($!)
echo "demo: API on 127.0.0.1:$api_port, worker probes on 127.0.0.1:$worker_port (logs in $logs/)"

INFERFLEET_DEMO_KEY=$key INFERFLEET_DEMO_SECRET=$secret "$venv/bin/python" scripts/demo_client.py \
    --api "http://127.0.0.1:$api_port" --worker "http://127.0.0.1:$worker_port" "$@"
