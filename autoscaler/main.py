"""`python -m autoscaler` (`inferfleet autoscale`): run worker processes the way KEDA and the
HPA would scale the ScaledObject's Deployment.

Every `pollingInterval` KEDA's loop measures the triggers and moves the workers between 0
and the minimum; every sync period the HPA's loop sets any other count. Each change is
logged with its reason; the lag, the desired and the running replicas are served as
Prometheus metrics.

Workers run `python -m worker` with the supervisor's environment, plus what the
ScaledObject implies: `INFERFLEET_WORKER_GROUP` is the triggers' `consumerGroup` (KEDA
measures that group, so the workers must be it), `INFERFLEET_WORKER_MODELS` the models
whose topics (`inferfleet.jobs.<model>.<lane>`) the triggers name, and
`INFERFLEET_WORKER_HTTP_PORT` 0, so each worker serves its health and metrics on a free
port (logged). `--env NAME=VALUE` sets or overrides any of them (a different group is
refused). The Deployment's own env is not read: its values name the cluster's services.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server

from autoscaler import manifest
from autoscaler.engine import Autoscaler, Step
from autoscaler.hpa import (
    DEFAULT_DOWNSCALE_STABILIZATION_S,
    DEFAULT_SYNC_PERIOD_S,
    DEFAULT_TOLERANCE,
)
from autoscaler.metrics import AutoscalerMetrics
from autoscaler.offsets import KafkaOffsets
from autoscaler.pool import WorkerPool
from autoscaler.spec import ScaledObject, ScaledObjectError
from inferfleet.clients.topics import LANES, job_topic
from inferfleet.errors import InferfleetError
from inferfleet.settings import load_settings

log = logging.getLogger("autoscaler")

ROOT = Path(__file__).resolve().parents[1]


def parser() -> argparse.ArgumentParser:
    """The command line of `python -m autoscaler`."""
    p = argparse.ArgumentParser(
        prog="inferfleet autoscale",
        description="Run local worker processes with the replica counts KEDA and the HPA "
        "would choose for a ScaledObject.",
    )
    p.add_argument("--scaled-object", type=Path, required=True, help="a KEDA ScaledObject YAML")
    p.add_argument("--name", help="which ScaledObject, if the file holds several")
    p.add_argument(
        "--poll-interval", type=float, help="KEDA's polling interval, s (default: the manifest's)"
    )
    p.add_argument(
        "--sync-period",
        type=float,
        default=DEFAULT_SYNC_PERIOD_S,
        help="the HPA's sync period, s (default %(default)s)",
    )
    p.add_argument("--cooldown", type=float, help="cooldownPeriod, s (default: the manifest's)")
    p.add_argument(
        "--downscale-stabilization",
        type=float,
        default=DEFAULT_DOWNSCALE_STABILIZATION_S,
        help="the HPA's scale-down stabilization window where the manifest sets none, s "
        "(default %(default)s)",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help="the HPA's tolerance (default %(default)s)",
    )
    p.add_argument(
        "--grace-period",
        type=float,
        default=30.0,
        help="how long a stopped worker may drain before it is killed, s (default %(default)s)",
    )
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for the workers (repeatable)",
    )
    p.add_argument("--worker-log-dir", type=Path, help="write each worker's output to a file here")
    p.add_argument("--metrics-host", default="127.0.0.1")
    p.add_argument(
        "--metrics-port",
        type=int,
        default=9102,
        help="Prometheus metrics port, 0 = off (default %(default)s)",
    )
    p.add_argument("--log-level", default="INFO")
    return p


def model_of(topic: str) -> str | None:
    """The model whose job topic `topic` is, or None for any other topic."""
    for lane in LANES:
        head, tail = job_topic("\0", lane).split("\0")
        model = topic[len(head) : -len(tail)]
        if topic.startswith(head) and topic.endswith(tail) and job_topic(model, lane) == topic:
            return model or None
    return None


def worker_env(
    so: ScaledObject, inherited: Mapping[str, str], overrides: Sequence[str]
) -> dict[str, str]:
    """The workers' environment: inherited, then what the ScaledObject implies, then --env."""
    given: dict[str, str] = {}
    for item in overrides:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ScaledObjectError(f"--env {item!r} is not NAME=VALUE")
        given[name] = value
    group = so.triggers[0].consumer_group
    env = {**inherited, "INFERFLEET_WORKER_GROUP": group, "INFERFLEET_WORKER_HTTP_PORT": "0"}
    models = [model_of(t.topic) if t.topic else None for t in so.triggers]
    if all(models):
        env["INFERFLEET_WORKER_MODELS"] = json.dumps(sorted({m for m in models if m}))
    elif "INFERFLEET_WORKER_MODELS" not in given:
        raise ScaledObjectError(
            "the triggers name topics that are not inferfleet job topics (or none); "
            "say which models the workers serve with --env INFERFLEET_WORKER_MODELS=a,b"
        )
    env.update(given)
    if env["INFERFLEET_WORKER_GROUP"] != group:
        raise ScaledObjectError(
            f"--env sets INFERFLEET_WORKER_GROUP={env['INFERFLEET_WORKER_GROUP']} but the "
            f"triggers measure group {group}; the workers must be that group"
        )
    return env


class Supervisor:
    """The two loops over one ScaledObject, its worker pool and its Kafka reads."""

    def __init__(
        self,
        so: ScaledObject,
        pool: WorkerPool,
        offsets: KafkaOffsets,
        metrics: AutoscalerMetrics,
        poll_s: float,
        sync_s: float,
        downscale_stabilization_s: float,
        tolerance: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.so = so
        self.pool = pool
        self.offsets = offsets
        self.metrics = metrics
        self.poll_s = poll_s
        self.sync_s = sync_s
        self.clock = clock
        self.engine = Autoscaler(so, clock(), downscale_stabilization_s, tolerance)
        self.stop = threading.Event()

    def run(self) -> None:
        """Poll and sync until `stop` is set; the workers keep running (see `pool.shutdown`)."""
        next_poll = self.clock()
        next_sync = next_poll + self.sync_s
        while not self.stop.is_set():
            now = self.clock()
            if now >= next_poll:
                self.poll(now)
                next_poll = now + self.poll_s
            if now >= next_sync:
                self.sync(now)
                next_sync = now + self.sync_s
            self.pool.reconcile()
            self.metrics.replicas.set(self.pool.running)
            self.metrics.stopping.set(self.pool.stopping)
            wake = min(next_poll, next_sync, self.clock() + 0.5)
            self.stop.wait(max(0.0, wake - self.clock()))

    def poll(self, now: float) -> None:
        """KEDA's loop: measure, judge activity, maybe move between 0 and the minimum."""
        readings = {t.name: self.offsets.read(t) for t in self.so.triggers}
        step = self.engine.poll(now, self.pool.wanted, readings)
        self.metrics.observe(step.metrics, step.composite)
        self.metrics.active.set(1 if step.active else 0)
        self.apply("keda", step)

    def sync(self, now: float) -> None:
        """The HPA's loop, with fresh metrics except for triggers with useCachedMetrics."""
        fresh = [
            t for t in self.so.triggers if not (t.use_cached_metrics and t.name in self.engine.last)
        ]
        readings = {t.name: self.offsets.read(t) for t in fresh}
        step = self.engine.sync(now, self.pool.wanted, self.pool.running, readings)
        self.metrics.observe({t.name: step.metrics[t.name] for t in fresh}, step.composite)
        if step.proposal is not None:
            self.metrics.proposal.set(step.proposal)
        self.apply("hpa", step)

    def apply(self, loop: str, step: Step) -> None:
        """Set the count a loop decided, logging the change and its reason."""
        current = self.pool.wanted
        if step.replicas is None or step.replicas == current:
            log.debug("%s: stay at %d: %s", loop, current, step.reason)
            return
        log.info("%s: scale %d -> %d: %s", loop, current, step.replicas, step.reason)
        self.metrics.scalings.labels(loop, "up" if step.replicas > current else "down").inc()
        self.metrics.desired.set(step.replicas)
        self.pool.scale(step.replicas)


def main(argv: list[str] | None = None) -> None:
    """Run until SIGTERM or SIGINT, then drain every worker and exit 0."""
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    # kafka-python narrates every connection at INFO; its warnings still show.
    logging.getLogger("kafka").setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        settings = load_settings()
        so = manifest.load(args.scaled_object, args.name, os.environ)
        env = worker_env(so, os.environ, args.env)
    except InferfleetError as e:
        print(f"inferfleet autoscale: {e}", file=sys.stderr)
        sys.exit(2)
    poll_s = so.polling_interval_s if args.poll_interval is None else args.poll_interval
    if args.cooldown is not None:
        so = replace(so, cooldown_s=args.cooldown)
    metrics = AutoscalerMetrics()
    server: WSGIServer | None = None
    if args.metrics_port:
        try:
            server, _ = start_http_server(args.metrics_port, args.metrics_host, metrics.registry)
        except OSError as e:
            print(f"inferfleet autoscale: cannot serve metrics on port {args.metrics_port}: {e}")
            sys.exit(2)
    pool = WorkerPool(
        [sys.executable, "-m", "worker"],
        env,
        grace_s=args.grace_period,
        log_dir=args.worker_log_dir,
        cwd=ROOT,
    )
    offsets = KafkaOffsets(settings)
    supervisor = Supervisor(
        so,
        pool,
        offsets,
        metrics,
        poll_s=poll_s,
        sync_s=args.sync_period,
        downscale_stabilization_s=args.downscale_stabilization,
        tolerance=args.tolerance,
    )
    signal.signal(signal.SIGTERM, lambda *_: supervisor.stop.set())
    signal.signal(signal.SIGINT, lambda *_: supervisor.stop.set())
    log.info(
        "autoscaling %s (target %s): %d trigger(s) on group %s, replicas %d..%d, poll every "
        "%g s, HPA sync every %g s, cooldown %g s; workers serve %s; metrics on %s",
        so.name,
        so.target,
        len(so.triggers),
        so.triggers[0].consumer_group,
        so.min_replicas,
        so.max_replicas,
        poll_s,
        args.sync_period,
        so.cooldown_s,
        env.get("INFERFLEET_WORKER_MODELS"),
        f"{args.metrics_host}:{args.metrics_port}" if server else "(off)",
    )
    try:
        supervisor.run()
    finally:
        log.info("stopping: draining %d worker(s)", pool.running + pool.stopping)
        pool.shutdown()
        offsets.close()
        if server is not None:
            server.shutdown()
    log.info("stopped")
