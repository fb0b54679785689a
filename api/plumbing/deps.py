"""What routes depend on, as `Annotated` dependencies.

`create_app` puts one `Services` on `app.state`; routes ask for the pieces they need.
`Principal` is who is calling, resolved from the `Authorization: Bearer <key>` header
by `principal_for`: no key or an unknown or revoked one is 401. On `/v1` routes the
`AuthenticateMiddleware` resolves it before any byte of the body is read and leaves it
on `request.state`, where `get_principal` finds it.

Every dependency here is `async def`: FastAPI runs a plain `def` dependency in its
threadpool, a hop per request that none of these needs.

`create_app` includes every `/v1` router with `caller_within_limits` (or, for admin
routers, `admin_within_limits`) as its first dependency, so the checks run in API.md's
order: auth (401/403), body size (413), rate limit (429). FastAPI validates the body
(422) only after a route's dependencies pass.

Dependencies that wait on nothing are `async def`: FastAPI runs a plain `def` one in
its threadpool, a thread hop per dependency per request.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

from fastapi import Depends, Header, Request
from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from api.plumbing.admission import Admission
from api.plumbing.groupcommit import GroupCommitter
from api.plumbing.metrics import ApiMetrics
from api.plumbing.middleware import BODY_BUSY, BODY_REFUSED, EXCEEDED, PRINCIPAL
from api.plumbing.problems import ProblemError
from api.plumbing.queue import JobQueue
from api.plumbing.ratelimit import RateLimiter
from api.plumbing.reader import JobReader
from api.plumbing.waiters import JobWaiters
from inferfleet.caching import ChangeCache
from inferfleet.clients.objectstore import presigner
from inferfleet.errors import FieldError, InvalidInputError
from inferfleet.jobs.view import Presigner
from inferfleet.models.registry import ModelVersion
from inferfleet.settings import Settings
from inferfleet.tenants.keys import KeyRecord


class KeyResolver(Protocol):
    """The live record of a key, or None: `inferfleet.tenants.keys.KeyLookup` in the app."""

    def __call__(self, key: str) -> Awaitable[KeyRecord | None]: ...

    def clear(self) -> None:
        """Forget what is remembered: keys were made or revoked."""


@dataclass(frozen=True)
class Services:
    """The API's connections to the outside world, made once per app.

    `db` is the asyncio engine of the hot routes (submit, read, wait), and `reads` the
    same in autocommit, for single statements in one round trip (`clients.db.autocommit`);
    `engine` the blocking one of the routes that run in the threadpool.
    """

    settings: Settings
    engine: Engine
    db: AsyncEngine
    reads: AsyncEngine
    queue: JobQueue
    metrics: ApiMetrics
    s3: Any
    limiter: RateLimiter
    admission: Admission
    keys: KeyResolver
    submits: GroupCommitter  # the group commit every submit joins
    # alias/number -> version (`api.plumbing.versions`); coalesced job reads; the
    # long-polls' futures.
    versions: ChangeCache[tuple[str, str], ModelVersion]
    jobs: JobReader
    waiters: JobWaiters

    def presigner(self) -> Presigner:
        """Presigned GET URLs for the `s3://` URIs an answer names (outputs, results)."""
        return presigner(self.s3, self.settings.presign_expiry_s)


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


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def bearer_key(authorization: str | None) -> str:
    """The key an `Authorization` header sends; ProblemError (401) otherwise."""
    scheme, _, key = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ProblemError(
            401,
            "Unauthorized",
            "send an API key as `Authorization: Bearer <key>`",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return key.strip()


async def principal_for(resolve: KeyResolver, authorization: str | None) -> Principal:
    """The caller named by an `Authorization` header; ProblemError (401) otherwise.

    The one rule for keys: the middleware and the dependency below both use it. A key
    the resolver remembers is answered without waiting on anything.
    """
    record = await resolve(bearer_key(authorization))
    if record is None:
        raise ProblemError(
            401,
            "Unauthorized",
            "the API key is unknown or revoked",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return Principal(tenant=record.tenant, scope=record.scope, key_id=record.id)


async def get_principal(
    request: Request,
    services: ServicesDep,
    authorization: Annotated[str | None, Header()] = None,
) -> Principal:
    resolved = getattr(request.state, PRINCIPAL, None)
    if isinstance(resolved, Principal):
        return resolved
    return await principal_for(services.keys, authorization)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def require_admin(principal: PrincipalDep) -> Principal:
    """The caller, if its key holds the `admin` scope; 403 otherwise."""
    if principal.scope != "admin":
        raise ProblemError(403, "Forbidden", "this route needs a key with the admin scope")
    return principal


AdminDep = Annotated[Principal, Depends(require_admin)]


async def _within_limits(request: Request, services: Services, principal: Principal) -> Principal:
    exceeded: int | None = getattr(request.state, EXCEEDED, None)
    if exceeded is not None:
        services.metrics.requests_refused.labels(reason="too_large").inc()
        raise ProblemError(
            413, "Content Too Large", f"the request body is larger than {exceeded} bytes"
        )
    wait = await services.limiter.hit(principal.key_id)
    if wait is not None:
        services.metrics.requests_refused.labels(reason="rate_limited").inc()
        raise ProblemError(
            429,
            "Too Many Requests",
            f"this API key is over its rate limit ({services.limiter.rate}); try again in {wait} s",
            headers={"Retry-After": str(wait)},
        )
    refused: list[FieldError] | None = getattr(request.state, BODY_REFUSED, None)
    if refused is not None:
        services.metrics.requests_refused.labels(reason="body_shape").inc()
        raise InvalidInputError(refused)
    busy: float | None = getattr(request.state, BODY_BUSY, None)
    if busy is not None:
        services.metrics.requests_refused.labels(reason="body_slots_busy").inc()
        retry = services.settings.retry_after_s
        raise ProblemError(
            503,
            "Service Unavailable",
            f"this server is reading as many large bodies as it may; none was free within "
            f"{busy} s, so the body was not read and nothing was queued. Try again in {retry} s",
            headers={"Retry-After": str(retry)},
        )
    return principal


async def caller_within_limits(
    request: Request, services: ServicesDep, principal: PrincipalDep
) -> Principal:
    """The caller, once its body is within the size limit (413) and its key within the
    rate limit (429); each request counts once against the rate. Then a body the
    middleware refused unparsed (its shape: 422) or did not read (no slot free: 503)."""
    return await _within_limits(request, services, principal)


async def admin_within_limits(
    request: Request, services: ServicesDep, principal: AdminDep
) -> Principal:
    """`caller_within_limits` for admin routes: the scope (403) is checked before the size."""
    return await _within_limits(request, services, principal)


async def get_request_id(request: Request) -> str:
    request_id: str = request.state.request_id
    return request_id


RequestIdDep = Annotated[str, Depends(get_request_id)]


# The `Idempotency-Key` header of the routes that create something (api.plumbing.idempotency).
IdempotencyKey = Annotated[
    str | None,
    Header(
        max_length=255,
        description="an equal body under the same key within 24 h answers 200 with what "
        "the first request made; a different body answers 409",
    ),
]
