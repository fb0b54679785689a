"""Liveness, readiness and metrics: no key needed."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from api.deps import ServicesDep

router = APIRouter(tags=["health"])

_READINESS = {
    "type": "object",
    "properties": {
        "status": {"enum": ["ready", "not_ready"]},
        "checks": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "required": ["status", "checks"],
}


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """200 while the process lives."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={
        200: {"content": {"application/json": {"schema": _READINESS}}},
        503: {
            "description": "Postgres or Kafka does not answer",
            "content": {"application/json": {"schema": _READINESS}},
        },
    },
)
async def readyz(services: ServicesDep) -> JSONResponse:
    """200 only when Postgres and Kafka both answer; otherwise 503 naming what failed."""

    def check_postgres() -> str:
        try:
            with services.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as e:
            return f"unavailable: {type(e).__name__}"
        return "ok"

    checks = {
        "postgres": await run_in_threadpool(check_postgres),
        "kafka": await run_in_threadpool(services.queue.ready),
    }
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status_code=200 if ready else 503,
    )


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(services: ServicesDep) -> Response:
    """Prometheus text exposition of the API's registry."""
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)
