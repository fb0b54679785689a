"""What routes depend on, as `Annotated` dependencies.

`create_app` puts one `Services` on `app.state`; routes ask for the pieces they need.
`Principal` is who is calling: today every request acts as the configured default
tenant; API keys will resolve it here without changing any route.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import Engine

from api.metrics import ApiMetrics
from api.queue import JobQueue
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


def get_principal(services: Annotated[Services, Depends(get_services)]) -> Principal:
    return Principal(tenant=services.settings.default_tenant, scope="admin")


def get_request_id(request: Request) -> str:
    request_id: str = request.state.request_id
    return request_id


ServicesDep = Annotated[Services, Depends(get_services)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
RequestIdDep = Annotated[str, Depends(get_request_id)]
