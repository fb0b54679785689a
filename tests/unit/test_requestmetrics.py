"""api.plumbing.requestmetrics: request durations labelled by route template and status,
on a tiny in-process FastAPI app; and `inferfleet_build_info` in every service's registry."""

from __future__ import annotations

import platform
import warnings
from importlib.metadata import version

import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from starlette.requests import Request

from api.plumbing import problems
from api.plumbing.metrics import ApiMetrics
from api.plumbing.middleware import AuthenticateMiddleware
from api.plumbing.problems import ProblemError
from api.plumbing.requestmetrics import UNMATCHED, RequestMetricsMiddleware
from autoscaler.metrics import AutoscalerMetrics
from inferfleet import __version__
from scheduler.metrics import Totals, scheduler_registry
from worker.metrics import WorkerMetrics

with warnings.catch_warnings():
    # Starlette warns at import when the test client runs on httpx rather than httpx2;
    # the client behaves the same for these tests.
    warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

DURATION = "inferfleet_api_request_duration_seconds_count"


async def only_bearers(request: Request) -> str:
    if request.headers.get("authorization") != "Bearer ok":
        raise ProblemError(401, "Unauthorized", "no valid key")
    return "acme"


@pytest.fixture
def served() -> tuple[TestClient, ApiMetrics]:
    metrics = ApiMetrics()
    app = FastAPI()

    @app.get("/v1/jobs/{job_id}")
    async def get_job(job_id: str) -> dict[str, str]:
        if job_id == "missing":
            raise ProblemError(404, "Not Found", f"no job {job_id}")
        return {"id": job_id}

    @app.get("/v1/boom")
    async def boom() -> None:
        raise RuntimeError("the route failed")

    problems.install(app, 1)
    app.add_middleware(AuthenticateMiddleware, authenticate=only_bearers)
    app.add_middleware(RequestMetricsMiddleware, routes=app.router.routes, metrics=lambda: metrics)
    return TestClient(app, raise_server_exceptions=False), metrics


def count(metrics: ApiMetrics, method: str, route: str, status: str) -> float | None:
    labels = {"method": method, "route": route, "status": status}
    return metrics.registry.get_sample_value(DURATION, labels)


def test_requests_are_counted_by_route_template_never_by_path(
    served: tuple[TestClient, ApiMetrics],
) -> None:
    client, metrics = served
    ok = {"authorization": "Bearer ok"}
    for job_id in ("job_a", "job_b", "missing"):
        client.get(f"/v1/jobs/{job_id}", headers=ok)
    client.get("/v1/jobs/job_c")  # refused before routing, from its headers
    client.post("/v1/jobs/job_a", headers=ok)  # the path's route, another method
    client.get("/v1/nothing/here", headers=ok)
    client.get("/v1/boom", headers=ok)

    assert count(metrics, "GET", "/v1/jobs/{job_id}", "200") == 2
    assert count(metrics, "GET", "/v1/jobs/{job_id}", "404") == 1
    assert count(metrics, "GET", "/v1/jobs/{job_id}", "401") == 1
    assert count(metrics, "POST", "/v1/jobs/{job_id}", "405") == 1
    assert count(metrics, "GET", UNMATCHED, "404") == 1
    assert count(metrics, "GET", "/v1/boom", "500") == 1
    routes = {
        s.labels["route"]
        for family in metrics.registry.collect()
        if family.name == "inferfleet_api_request_duration_seconds"
        for s in family.samples
    }
    assert routes == {"/v1/jobs/{job_id}", UNMATCHED, "/v1/boom"}


def test_nothing_is_observed_before_the_metrics_exist() -> None:
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> str:
        return "pong"

    app.add_middleware(RequestMetricsMiddleware, routes=app.router.routes, metrics=lambda: None)
    assert TestClient(app).get("/ping").json() == "pong"


@pytest.mark.parametrize(
    "registry",
    [
        lambda: ApiMetrics().registry,
        lambda: WorkerMetrics().registry,
        lambda: AutoscalerMetrics().registry,
        lambda: scheduler_registry(Totals),
    ],
    ids=["api", "worker", "autoscaler", "scheduler"],
)
def test_every_service_reports_its_build(registry: object) -> None:
    found: CollectorRegistry = registry()  # type: ignore[operator]
    labels = {"version": __version__, "python": platform.python_version()}
    assert found.get_sample_value("inferfleet_build_info", labels) == 1


def test_build_info_names_the_installed_package_version() -> None:
    assert version("inferfleet") == __version__
