"""Liveness, readiness and metrics: no key needed.

`/healthz` and `/readyz` are `async` and use no threadpool dependency, so they answer
while every request thread is busy: `/healthz` at once, `/readyz` from the background
check (`api.plumbing.readiness`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from api.plumbing.deps import ServicesDep
from api.plumbing.readiness import Readiness

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
async def healthz() -> dict[str, str]:
    """200 while the process lives."""
    return {"status": "ok"}


async def get_readiness(request: Request) -> Readiness:
    readiness: Readiness = request.app.state.readiness
    return readiness


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
async def readyz(readiness: Annotated[Readiness, Depends(get_readiness)]) -> JSONResponse:
    """200 only when Postgres and Kafka both answered the last background check (at most
    a few seconds ago); otherwise 503 naming what failed."""
    report = readiness.report()
    return JSONResponse(
        {"status": "ready" if report.ready else "not_ready", "checks": report.checks},
        status_code=200 if report.ready else 503,
    )


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(services: ServicesDep) -> Response:
    """Prometheus text exposition of the API's metrics (of every process, when several
    serve this port)."""
    return Response(services.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


def postgres_check(engine: Engine) -> str:
    """`ok` when Postgres answers `SELECT 1`, else why not (blocking)."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as e:
        return f"unavailable: {type(e).__name__}"
    return "ok"
