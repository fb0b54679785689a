"""The Grafana dashboard and the alert rules name only metrics that exist, and every
alert links a runbook section that exists.

Defined names come from every service's metric registry, built here (every sample name
each family produces: `_total`, `_bucket`, …). A short list of other exporters' metrics
is allowed, each with where it comes from.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from api.plumbing.metrics import ApiMetrics, OutboxBacklog, OutboxCollector
from autoscaler.metrics import AutoscalerMetrics
from scheduler.metrics import Totals, scheduler_registry
from worker.metrics import WorkerMetrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "monitoring" / "grafana-dashboard.json"
RULES = ROOT / "monitoring" / "prometheus-rules.yaml"

EXTERNAL = {
    "keda_scaler_metrics_value": "KEDA operator",
    "keda_scaled_object_errors_total": "KEDA operator",
    "kube_deployment_status_replicas": "kube-state-metrics",
    "kube_deployment_status_replicas_available": "kube-state-metrics",
}
FUNCTIONS = {
    "abs", "absent", "avg", "avg_over_time", "ceil", "clamp_max", "clamp_min", "count",
    "delta", "deriv", "floor", "histogram_quantile", "increase", "irate", "label_replace",
    "max", "max_over_time", "min", "min_over_time", "rate", "round", "scalar", "sum", "time",
    "topk", "vector",
}  # fmt: skip
KEYWORDS = {"and", "or", "unless", "bool", "by", "without", "on", "ignoring"}
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "unknown": ("",),
}
# What the fleet's operators look for first (issues 7 and 16).
REQUIRED = {
    "inferfleet_api_request_duration_seconds_bucket",
    "inferfleet_api_request_duration_seconds_count",
    "inferfleet_worker_submit_to_result_seconds_bucket",
    "inferfleet_worker_consumed_records_total",
    "inferfleet_webhook_delivery_attempts_total",
    "inferfleet_build_info",
    "inferfleet_worker_consumer_lag_records",
    "inferfleet_worker_oldest_unconsumed_age_seconds",
    "inferfleet_worker_drain_time_seconds",
    "inferfleet_worker_batch_records_bucket",
    "inferfleet_worker_inference_duration_seconds_bucket",
    "inferfleet_worker_jobs_total",
    "inferfleet_webhook_pending_attempts",
}


def registry_names(registry: CollectorRegistry) -> set[str]:
    return {
        family.name + suffix for family in registry.collect() for suffix in SUFFIXES[family.type]
    }


def defined() -> set[str]:
    api = ApiMetrics()
    api.registry.register(OutboxCollector(lambda: OutboxBacklog(0, 0, 0.0)))
    registries = [
        api.registry,
        WorkerMetrics().registry,
        AutoscalerMetrics().registry,
        scheduler_registry(Totals),
    ]
    return {name for registry in registries for name in registry_names(registry)}


def anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of `markdown`."""
    found = set()
    for heading in re.findall(r"^#+\s+(.+?)\s*$", markdown, re.MULTILINE):
        text = re.sub(r"[^\w\- ]", "", heading.lower())
        found.add(text.replace(" ", "-"))
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads; fails on a function it does not know."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings: label values, regexes
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])([A-Za-z_:][\w:]*)(\s*\()?", text):
        word, call = match.group(1), match.group(2)
        if call:
            assert word in FUNCTIONS, f"unknown PromQL function {word!r} in {expr!r}"
        elif word not in KEYWORDS:
            names.add(word)
    assert expr.count("(") == expr.count(")"), f"unbalanced parentheses in {expr!r}"
    return names


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())  # type: ignore[no-any-return]


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]


def rules() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def test_metric_names_are_found_in_promql() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, model) (rate(a_bucket{x=~"b.*"}[5m]))) '
        "/ on (model) max(b) unless c > 0"
    )
    assert metric_names(expr) == {"a_bucket", "b", "c"}
    with pytest.raises(AssertionError, match="unknown PromQL function"):
        metric_names("histogram_quantil(0.5, x)")


@pytest.mark.parametrize(
    ("source", "exprs"),
    [("dashboard", dashboard_exprs), ("alert rules", lambda: [r["expr"] for r in rules()])],
)
def test_every_metric_named_is_defined(source: str, exprs: Any) -> None:
    known = defined() | set(EXTERNAL)
    used = {name for expr in exprs() for name in metric_names(expr)}
    assert used, f"the {source} names no metric"
    assert not used - known, f"the {source} names metrics no code defines: {used - known}"


def test_the_dashboard_shows_what_the_fleet_needs() -> None:
    used = {name for expr in dashboard_exprs() for name in metric_names(expr)}
    assert used >= REQUIRED, f"missing from the dashboard: {REQUIRED - used}"


def test_the_dashboard_is_well_formed() -> None:
    board = dashboard()
    variables = {v["name"] for v in board["templating"]["list"]}
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert {"h", "w", "x", "y"} <= panel["gridPos"].keys()
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] == "row":
            continue
        assert panel["title"]
        assert panel["description"]
        assert panel["datasource"]["uid"].strip("${}") in variables
        refs = [t["refId"] for t in panel["targets"]]
        assert refs
        assert len(refs) == len(set(refs))


def test_alert_rules_are_complete() -> None:
    found = rules()
    names = [r["alert"] for r in found]
    assert len(names) == len(set(names))
    for rule in found:
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        assert rule["annotations"]["summary"]
        assert rule["annotations"]["description"]


def test_every_alert_links_a_runbook_section_that_exists() -> None:
    for rule in rules():
        url = rule["annotations"].get("runbook_url")
        assert url, f"{rule['alert']} has no runbook_url"
        path, _, anchor = url.partition("#")
        assert path in ("README.md", "docs/operations.md"), f"{rule['alert']}: {url}"
        assert anchor in anchors((ROOT / path).read_text()), f"{rule['alert']}: no section {url}"


def test_anchors_follow_githubs_rule() -> None:
    text = "# inferfleet\n## How a job moves\n### `max` by (topic): lag, age!\n"
    assert anchors(text) == {"inferfleet", "how-a-job-moves", "max-by-topic-lag-age"}
