"""What routes depend on, as `Annotated` dependencies.

`create_app` puts one `Services` on `app.state`; routes ask for the pieces they need.
`Principal` is who is calling, resolved from the `Authorization: Bearer <key>` header:
no key or an unknown or revoked one is 401.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from sqlalchemy import Engine

from api.metrics import ApiMetrics
from api.problems import ProblemError
from api.queue import JobQueue
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


@dataclass(frozen=True)
class Principal:
    """The caller: the tenant whose objects it may see, and what it may do."""

    tenant: str
    scope: str


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def get_principal(
    services: Annotated[Services, Depends(get_services)],
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
    return Principal(tenant=record.tenant, scope=record.scope)


def require_admin(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    """The caller, if its key holds the `admin` scope; 403 otherwise."""
    if principal.scope != "admin":
        raise ProblemError(403, "Forbidden", "this route needs a key with the admin scope")
    return principal


def get_request_id(request: Request) -> str:
    request_id: str = request.state.request_id
    return request_id


ServicesDep = Annotated[Services, Depends(get_services)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
AdminDep = Annotated[Principal, Depends(require_admin)]
RequestIdDep = Annotated[str, Depends(get_request_id)]
