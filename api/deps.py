"""What routes depend on, as `Annotated` dependencies.

`create_app` puts one `Services` on `app.state`; routes ask for the pieces they need.
`Principal` is who is calling, resolved from the `Authorization: Bearer <key>` header:
no key or an unknown or revoked one is 401.

`create_app` includes every `/v1` router with `caller_within_limits` (or, for admin
routers, `admin_within_limits`) as its first dependency, so the checks run in API.md's
order: auth (401/403), body size (413), rate limit (429). FastAPI validates the body
(422) only after a route's dependencies pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from sqlalchemy import Engine

from api.admission import Admission
from api.metrics import ApiMetrics
from api.middleware import EXCEEDED
from api.problems import ProblemError
from api.queue import JobQueue
from api.ratelimit import RateLimiter
from inferfleet import keys
from inferfleet.settings import Settings


@dataclass(frozen=True)
class Services:
    """The API's connections to the outside world, made once per app."""

    settings: Settings
    engine: Engine
    queue: JobQueue
    metrics: ApiMetrics
    s3: Any
    limiter: RateLimiter
    admission: Admission


@dataclass(frozen=True)
class Principal:
    """The caller: the tenant whose objects it may see, what it may do, and its key's id."""

    tenant: str
    scope: str
    key_id: str

    @property
    def reads(self) -> str | None:
        """The tenant whose objects this caller may read, or None for every tenant
        (an admin key)."""
        return None if self.scope == "admin" else self.tenant


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_principal(
    services: ServicesDep,
    authorization: Annotated[str | None, Header()] = None,
) -> Principal:
    scheme, _, key = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ProblemError(
            401,
            "Unauthorized",
            "send an API key as `Authorization: Bearer <key>`",
            headers={"WWW-Authenticate": "Bearer"},
        )
    with services.engine.connect() as conn:
        record = keys.authenticate(conn, key.strip())
    if record is None:
        raise ProblemError(
            401,
            "Unauthorized",
            "the API key is unknown or revoked",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return Principal(tenant=record.tenant, scope=record.scope, key_id=record.id)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require_admin(principal: PrincipalDep) -> Principal:
    """The caller, if its key holds the `admin` scope; 403 otherwise."""
    if principal.scope != "admin":
        raise ProblemError(403, "Forbidden", "this route needs a key with the admin scope")
    return principal


AdminDep = Annotated[Principal, Depends(require_admin)]


def _within_limits(request: Request, services: Services, principal: Principal) -> Principal:
    exceeded: int | None = getattr(request.state, EXCEEDED, None)
    if exceeded is not None:
        services.metrics.requests_refused.labels(reason="too_large").inc()
        raise ProblemError(
            413, "Content Too Large", f"the request body is larger than {exceeded} bytes"
        )
    wait = services.limiter.hit(principal.key_id)
    if wait is not None:
        services.metrics.requests_refused.labels(reason="rate_limited").inc()
        raise ProblemError(
            429,
            "Too Many Requests",
            f"this API key is over its rate limit ({services.limiter.rate}); try again in {wait} s",
            headers={"Retry-After": str(wait)},
        )
    return principal


def caller_within_limits(
    request: Request, services: ServicesDep, principal: PrincipalDep
) -> Principal:
    """The caller, once its body is within the size limit (413) and its key within the
    rate limit (429); each request counts once against the rate."""
    return _within_limits(request, services, principal)


def admin_within_limits(request: Request, services: ServicesDep, principal: AdminDep) -> Principal:
    """`caller_within_limits` for admin routes: the scope (403) is checked before the size."""
    return _within_limits(request, services, principal)


def get_request_id(request: Request) -> str:
    request_id: str = request.state.request_id
    return request_id


RequestIdDep = Annotated[str, Depends(get_request_id)]
