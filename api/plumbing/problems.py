"""Errors as `application/problem+json` (RFC 9457), one handler per error kind."""

from __future__ import annotations

import copy
import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException
from starlette.routing import Match

from inferfleet.clients.outages import DATABASE_AWAY
from inferfleet.errors import (
    ArtifactError,
    FieldError,
    InvalidInputError,
    NotFoundError,
    QueueUnavailableError,
)

PROBLEM = "application/problem+json"


class ProblemFieldError(BaseModel):
    """One offending field of a 422: `loc` starts at the body field."""

    loc: list[str | int]
    msg: str
    type: str
    input: Any


class Problem(BaseModel):
    """Every error answer (RFC 9457); extension members carry state, e.g. `job_status`."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    request_id: str | None
    errors: list[ProblemFieldError]


_RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before trying again",
        "schema": {"type": "integer"},
        "required": True,
    }
}


def _documented(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    if headers:
        answer["headers"] = headers
    return answer


# Every error a /v1 route can answer, as problem+json. The `Problem` schema is added to
# the document's components by `document`: FastAPI registers only the models it
# documents as application/json itself.
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _documented("the body cannot be read as JSON (bytes that are not UTF-8)"),
    401: _documented("no API key, or an unknown or revoked one"),
    403: _documented("the key lacks the scope, or a named URI lies outside the tenant"),
    404: _documented("no such object; another tenant's objects are 404 too"),
    409: _documented("the object's state forbids this; a job's carries `job_status`"),
    413: _documented("the request body is larger than the route's limit"),
    422: _documented("invalid request; `errors` lists every offending field"),
    429: _documented("too many requests", _RETRY_AFTER),
    503: _documented("the queue or the database is unavailable", _RETRY_AFTER),
}
# What every /v1 route can answer, whatever it does: its key is checked (401), its rate
# limit (429) and a body's size (413, routes that take one) by the dependencies every
# /v1 router is included with; validation errors (422) and an unavailable database or
# queue (503) are answered by the app-wide handlers in `install`, and a body FastAPI
# cannot decode (400) by FastAPI itself.
EVERY_V1_ROUTE = (401, 422, 429, 503)
EVERY_V1_BODY_ROUTE = (400, 413)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` entries of `statuses`, for a route or router."""
    return {s: PROBLEM_RESPONSES[s] for s in statuses}


def document(openapi: dict[str, Any]) -> None:
    """Add the problem+json answers every /v1 operation can give to `openapi`, in place.

    Routes declare the answers of their own (403, 404, 409) with `problem_responses`.
    FastAPI's default 422 (`HTTPValidationError` as application/json) is replaced: the
    handler in `install` answers every validation error as a problem.
    """
    schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
    schemas.update({**schema.pop("$defs", {}), "Problem": schema})
    for path, item in openapi["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, operation in item.items():
            statuses: tuple[int, ...] = EVERY_V1_ROUTE
            if method in ("post", "put", "patch"):
                statuses += EVERY_V1_BODY_ROUTE
            for status in statuses:
                operation["responses"][str(status)] = copy.deepcopy(PROBLEM_RESPONSES[status])
    if "/HTTPValidationError" not in json.dumps(openapi["paths"]):
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)


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
            {"loc": list(e.loc), "msg": e.msg, "type": e.type, "input": _jsonable(e.input)}
            for e in problem.errors
        ],
        **problem.extensions,
    }
    return JSONResponse(
        body, status_code=problem.status, headers=problem.headers, media_type=PROBLEM
    )


def _jsonable(value: Any) -> Any:
    # A body that is not JSON reaches validation as bytes, which JSON cannot carry.
    return jsonable_encoder(value, custom_encoder={bytes: lambda b: b.decode("utf-8", "replace")})


def _allowed_methods(request: Request) -> str:
    # Starlette's 405 names the methods of the first route for the path only, but RFC
    # 9110's `Allow` lists every method the resource supports: ask every route.
    allowed = []
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"):
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] is Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return ", ".join(allowed)


def _body_loc(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    # FastAPI prefixes body fields with "body"; API.md's locations start at the field.
    return tuple(loc[1:]) if loc and loc[0] == "body" else tuple(loc)


def install(app: FastAPI, retry_after_s: int) -> None:
    """Register the handlers that turn exceptions into problem documents.

    FastAPI parses a body before any dependency runs, so a body that is not JSON would
    answer 422 before the auth dependency answers 401: on /v1 routes the app's
    `AuthenticateMiddleware` answers 401 before the body is read.
    """

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

    @app.exception_handler(DataError)
    async def _unstorable(request: Request, exc: DataError) -> JSONResponse:
        # A value the database cannot hold (a NUL character, a number out of range)
        # came with the request: it is refused like any other invalid value.
        reason = str(exc.orig).splitlines()[0] if exc.orig is not None else type(exc).__name__
        return problem_response(
            request,
            ProblemError(
                422, "Unprocessable Content", f"a value in the request cannot be stored: {reason}"
            ),
        )

    _install_database_away(app, retry_after_s)

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
        headers = dict(exc.headers) if exc.headers else {}
        if exc.status_code == 405:
            headers["Allow"] = _allowed_methods(request)
        return problem_response(
            request,
            ProblemError(
                exc.status_code, _title(exc.status_code), str(exc.detail), headers=headers
            ),
        )


def _install_database_away(app: FastAPI, retry_after_s: int) -> None:
    """503 for every failure that means the database did not answer: no connection, or
    none free in time."""

    async def _db_down(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(request, database_unavailable(retry_after_s))

    for away in DATABASE_AWAY:
        app.add_exception_handler(away, _db_down)


def database_unavailable(retry_after_s: int) -> ProblemError:
    """The 503 answered while the database does not answer."""
    return ProblemError(
        503,
        "Service Unavailable",
        "the database is unavailable; try again later",
        headers={"Retry-After": str(retry_after_s)},
    )


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
