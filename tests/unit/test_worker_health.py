"""worker.health.report_models: /readyz and the metric name the provider each model runs on."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from worker.health import model_loaded_gauge, report_models


@dataclass(frozen=True)
class Served:
    name: str
    version: int
    provider: str


def loaded_samples(registry: CollectorRegistry) -> set[tuple[str, str, str]]:
    return {
        (s.labels["model"], s.labels["version"], s.labels["provider"])
        for metric in registry.collect()
        for s in metric.samples
        if s.name == "inferfleet_worker_model_loaded" and s.value == 1
    }


def test_each_model_is_reported_with_the_provider_its_session_runs_on() -> None:
    registry = CollectorRegistry()
    gauge = model_loaded_gauge(registry)
    models = [
        Served("minilm", 2, "CUDAExecutionProvider"),
        Served("fraud", 1, "CPUExecutionProvider"),
        Served("fraud", 10, "TensorrtExecutionProvider"),
    ]

    body = report_models(models, gauge)

    assert body == [
        {"model": "fraud", "version": "1", "provider": "CPUExecutionProvider"},
        {"model": "fraud", "version": "10", "provider": "TensorrtExecutionProvider"},
        {"model": "minilm", "version": "2", "provider": "CUDAExecutionProvider"},
    ]
    assert loaded_samples(registry) == {
        ("fraud", "1", "CPUExecutionProvider"),
        ("fraud", "10", "TensorrtExecutionProvider"),
        ("minilm", "2", "CUDAExecutionProvider"),
    }


def test_an_unloaded_model_leaves_the_metric() -> None:
    registry = CollectorRegistry()
    gauge = model_loaded_gauge(registry)
    report_models([Served("fraud", 1, "CPUExecutionProvider")], gauge)

    report_models([Served("fraud", 2, "CUDAExecutionProvider")], gauge)

    assert loaded_samples(registry) == {("fraud", "2", "CUDAExecutionProvider")}
