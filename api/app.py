"""The FastAPI application factory: `create_app(settings)` wires every external system."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import health, jobs, keys, models, problems
from api.deps import Services
from api.metrics import ApiMetrics
from api.middleware import BodyLimitMiddleware, RequestIdMiddleware
from api.queue import JobQueue
from inferfleet.db import make_engine
from inferfleet.objectstore import make_s3_client
from inferfleet.settings import Settings, load_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API; connections open in the lifespan and close with it."""
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings)
        queue = JobQueue(settings)
        app.state.services = Services(
            settings=settings,
            engine=engine,
            queue=queue,
            metrics=ApiMetrics(),
            s3=make_s3_client(settings),
        )
        try:
            yield
        finally:
            queue.close()
            engine.dispose()

    app = FastAPI(title="inferfleet", version="1", lifespan=lifespan)
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(models.router)
    app.include_router(keys.router)
    problems.install(app, settings.retry_after_s)

    def limit_for(path: str) -> int:
        if path == "/v1/jobs/bulk":
            return settings.max_bulk_body_bytes
        return settings.max_body_bytes

    app.add_middleware(BodyLimitMiddleware, limit_for=limit_for)
    app.add_middleware(RequestIdMiddleware)
    return app
