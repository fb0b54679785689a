"""ASGI middleware that times every HTTP request by method, route template and status.

The route label is the path template of the route that served the request
(`/v1/jobs/{job_id}`), never the raw path, so the label stays bounded whatever clients
send. A request answered before routing (401 from the headers, say) is labelled with the
route its path matches; a path no route serves is `unmatched`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.plumbing.metrics import ApiMetrics

UNMATCHED = "unmatched"


def route_template(scope: Scope, routes: Sequence[BaseRoute]) -> str:
    """The path template of the route that served (or would serve) the request."""
    route = scope.get("route")
    if route is None:
        # A partial match is a path a route serves with another method (405).
        route = next((r for r in routes if r.matches(scope)[0] != Match.NONE), None)
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


class RequestMetricsMiddleware:
    """Observes `inferfleet_api_request_duration_seconds` for each HTTP request.

    `metrics()` gives the API's metrics, or None before the lifespan made them (then
    nothing is observed). A request whose app raised counts as a 500.
    """

    def __init__(
        self,
        app: ASGIApp,
        routes: Sequence[BaseRoute],
        metrics: Callable[[], ApiMetrics | None],
    ) -> None:
        self.app = app
        self.routes = routes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            metrics = self.metrics()
            if metrics is not None:
                metrics.request_seconds.labels(
                    scope["method"], route_template(scope, self.routes), str(status)
                ).observe(time.perf_counter() - started)
