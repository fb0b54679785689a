"""Errors as `application/problem+json` (RFC 9457), one handler per error kind."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException

from inferfleet.errors import (
    ArtifactError,
    FieldError,
    InvalidInputError,
    NotFoundError,
    QueueUnavailableError,
)

PROBLEM = "application/problem+json"


class ProblemError(Exception):
    """Raised by routes to answer with a problem document."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors or []
        self.headers = headers or {}
        self.extensions = extensions


def problem_response(request: Request, problem: ProblemError) -> JSONResponse:
    """Render `problem` with the request's id."""
    slug = problem.title.lower().replace(" ", "-")
    body: dict[str, Any] = {
        "type": f"https://inferfleet.dev/problems/{slug}",
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
        "request_id": getattr(request.state, "request_id", None),
        "errors": [
            {"loc": list(e.loc), "msg": e.msg, "type": e.type, "input": e.input}
            for e in problem.errors
        ],
        **problem.extensions,
    }
    return JSONResponse(
        body, status_code=problem.status, headers=problem.headers, media_type=PROBLEM
    )


def _body_loc(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    # FastAPI prefixes body fields with "body"; API.md's locations start at the field.
    return tuple(loc[1:]) if loc and loc[0] == "body" else tuple(loc)


def install(app: FastAPI, retry_after_s: int) -> None:
    """Register the handlers that turn exceptions into problem documents."""

    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _request_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            FieldError(
                _body_loc(tuple(e["loc"])),
                e["msg"],
                e["type"],
                None if e["type"] == "missing" else e.get("input"),
            )
            for e in exc.errors()
        ]
        detail = f"{len(errors)} invalid field(s): " + ", ".join(
            ".".join(map(str, e.loc)) for e in errors
        )
        return problem_response(
            request, ProblemError(422, "Unprocessable Content", detail, errors=errors)
        )

    @app.exception_handler(InvalidInputError)
    async def _input_invalid(request: Request, exc: InvalidInputError) -> JSONResponse:
        detail = f"{len(exc.errors)} invalid field(s): " + ", ".join(
            ".".join(map(str, e.loc)) for e in exc.errors
        )
        return problem_response(
            request, ProblemError(422, "Unprocessable Content", detail, errors=exc.errors)
        )

    @app.exception_handler(NotFoundError)
    async def _not_found(request: Request, exc: NotFoundError) -> JSONResponse:
        return problem_response(request, ProblemError(404, "Not Found", str(exc)))

    @app.exception_handler(ArtifactError)
    async def _bad_artifact(request: Request, exc: ArtifactError) -> JSONResponse:
        return problem_response(request, ProblemError(422, "Unprocessable Content", str(exc)))

    @app.exception_handler(QueueUnavailableError)
    async def _queue_down(request: Request, exc: QueueUnavailableError) -> JSONResponse:
        return problem_response(
            request,
            ProblemError(
                503,
                "Service Unavailable",
                f"{exc}. The job was not queued; submit it again later.",
                headers={"Retry-After": str(retry_after_s)},
            ),
        )

    @app.exception_handler(OperationalError)
    async def _db_down(request: Request, exc: OperationalError) -> JSONResponse:
        return problem_response(
            request,
            ProblemError(
                503,
                "Service Unavailable",
                "the database is unavailable; try again later",
                headers={"Retry-After": str(retry_after_s)},
            ),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Starlette answers this outside every middleware and then re-raises, so the
        # server logs the traceback; the request id header is added here.
        request_id = getattr(request.state, "request_id", "")
        return problem_response(
            request,
            ProblemError(
                500,
                "Internal Server Error",
                "the server failed; the request id identifies it in the logs",
                headers={"X-Request-ID": request_id},
            ),
        )

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        headers = dict(exc.headers) if exc.headers else None
        return problem_response(
            request,
            ProblemError(
                exc.status_code, _title(exc.status_code), str(exc.detail), headers=headers
            ),
        )


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
