"""The FastAPI application factory: `create_app(settings)` wires every external system."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from fastapi import Depends, FastAPI, Request
from sqlalchemy.exc import OperationalError

from api.plumbing import problems
from api.plumbing.admission import Admission, KafkaBacklog
from api.plumbing.bodies import inspector
from api.plumbing.deps import (
    Principal,
    Services,
    admin_within_limits,
    caller_within_limits,
    principal_for,
)
from api.plumbing.metrics import ApiMetrics, multiprocess_dir
from api.plumbing.middleware import (
    AuthenticateMiddleware,
    BodyLimitMiddleware,
    BodySlots,
    RequestIdMiddleware,
)
from api.plumbing.notices import listener_for
from api.plumbing.openapi import documented_openapi
from api.plumbing.queue import JobQueue
from api.plumbing.ratelimit import RateLimiter, parse_rate, redis_storage
from api.plumbing.reader import JobReader
from api.plumbing.readiness import Readiness
from api.plumbing.requestmetrics import RequestMetricsMiddleware
from api.plumbing.submit import submit_committer
from api.plumbing.versions import version_cache
from api.plumbing.waiters import JobWaiters
from api.routes import batches, deliveries, health, jobs, keys, models, schedules, tenants, uploads
from inferfleet import tracing
from inferfleet.clients.db import autocommit, make_async_engine, make_engine
from inferfleet.clients.objectstore import make_s3_client
from inferfleet.settings import Settings, load_settings
from inferfleet.tenants.keys import KeyLookup

DESCRIPTION = """\
Submit inference jobs to a fleet of batched ONNX Runtime workers; poll for the result
or receive a signed webhook.

Every `/v1` route needs `Authorization: Bearer <api key>`. Errors are
`application/problem+json` (RFC 9457). Every response carries `X-Request-ID`: the
client's, if it sent a well-formed one, else a new id; worker log lines about the
job carry the same id as `request_id=`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API; connections open in the lifespan and close with it.

    A malformed `rate_limit` fails here, naming the variable.
    """
    settings = settings or load_settings()
    rate = parse_rate(settings.rate_limit)
    tracing.setup("inferfleet-api")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings, pool_size=5)
        db = make_async_engine(settings)
        reads = autocommit(db)
        queue = JobQueue(settings)
        metrics = ApiMetrics(multiprocess_dir())
        metrics.watch_outbox(engine)
        backlog = KafkaBacklog(settings)
        keys = KeyLookup(
            reads,
            settings.cache_max_age_s,
            settings.unknown_key_cache_s,
            settings.unknown_key_cache_size,
        )
        app.state.services = Services(
            settings=settings,
            engine=engine,
            db=db,
            reads=reads,
            queue=queue,
            metrics=metrics,
            s3=make_s3_client(settings),
            limiter=RateLimiter(redis_storage(settings.redis_url), rate, metrics=metrics),
            admission=Admission(settings, backlog, metrics),
            keys=keys,
            submits=submit_committer(settings, db, queue, metrics),
            versions=version_cache(settings.cache_max_age_s),
            jobs=JobReader(reads),
            waiters=JobWaiters(reads),
        )
        listener = listener_for(app.state.services, keys)
        background = [
            asyncio.create_task(listener.run(), name="notifications"),
            asyncio.create_task(app.state.services.waiters.run(), name="waiters"),
        ]
        # Serving starts without waiting for the listener: when it connects it clears
        # what was cached and checks the waiters, so nothing announced before is missed.
        app.state.listener_task = background[0]
        readiness = Readiness(
            {"postgres": lambda: health.postgres_check(engine), "kafka": queue.ready},
            settings.readiness_interval_s,
        )
        app.state.readiness = readiness
        await readiness.check()
        background.append(asyncio.create_task(readiness.run(), name="readiness"))
        # What is built by now lives as long as the process: frozen out of the
        # collector's reach, so that full collections scan only what requests made.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            for task in background:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
            readiness.close()
            await app.state.services.submits.close()
            backlog.close()
            queue.close()
            engine.dispose()
            await db.dispose()
            metrics.close()

    app = FastAPI(
        title="inferfleet",
        summary="Asynchronous batched inference: submit jobs, poll or get a webhook.",
        description=DESCRIPTION,
        version="1",
        lifespan=lifespan,
    )
    app.openapi = documented_openapi(app)  # type: ignore[method-assign]
    app.include_router(health.router)
    # Every /v1 router, with its checks first and in API.md's order (see api.plumbing.deps).
    for router in (jobs.router, deliveries.router, uploads.router, batches.router):
        app.include_router(router, dependencies=[Depends(caller_within_limits)])
    for router in (models.router, keys.router, tenants.router, schedules.router):
        app.include_router(router, dependencies=[Depends(admin_within_limits)])
    problems.install(app, settings.retry_after_s)

    def limit_for(path: str) -> int:
        if path == "/v1/jobs/bulk":
            return settings.max_bulk_body_bytes
        return settings.max_body_bytes

    slots = BodySlots(
        settings.large_body_slots, settings.large_body_bytes, settings.large_body_wait_s
    )
    app.add_middleware(
        BodyLimitMiddleware, limit_for=limit_for, slots=slots, inspect=inspector(settings)
    )
    app.add_middleware(AuthenticateMiddleware, authenticate=authenticate)
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(
        RequestMetricsMiddleware, routes=app.router.routes, metrics=lambda: api_metrics(app)
    )
    return app


def api_metrics(app: FastAPI) -> ApiMetrics | None:
    """The metrics the lifespan made, or None before it ran (or after a failed start)."""
    services: Services | None = getattr(app.state, "services", None)
    return services.metrics if services is not None else None


async def authenticate(request: Request) -> Principal:
    """The caller of a /v1 request, from its `Authorization` header alone (the rule of
    api.plumbing.deps); ProblemError: 401, or 503 while the database does not answer."""
    services: Services = request.app.state.services
    try:
        return await principal_for(services.keys, request.headers.get("authorization"))
    except OperationalError as e:
        raise problems.database_unavailable(services.settings.retry_after_s) from e
