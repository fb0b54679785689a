"""Admin routes under /v1/models: the registry over HTTP."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from api.plumbing import packages
from api.plumbing.deps import ServicesDep, require_admin
from api.plumbing.problems import problem_responses
from inferfleet.models import registry
from inferfleet.models.schemas import (
    AliasUpdate,
    AliasView,
    ModelList,
    ModelVersionView,
    ModelView,
    RegisterVersion,
)

router = APIRouter(
    prefix="/v1/models",
    tags=["models"],
    dependencies=[Depends(require_admin)],
    responses=problem_responses(403),
)


@router.get("", response_model=ModelList)
def list_models(services: ServicesDep) -> ModelList:
    """Every model, its aliases and its latest version."""
    with services.engine.connect() as conn:
        return ModelList(items=registry.summaries(conn))


@router.get("/{name}", response_model=ModelView, responses=problem_responses(404))
def read_model(name: str, services: ServicesDep) -> ModelView:
    """A model's versions (schemas, files, preprocessing) and its aliases."""
    with services.engine.connect() as conn:
        return registry.describe(conn, name)


@router.post(
    "/{name}/versions",
    status_code=201,
    response_model=ModelVersionView,
    responses=problem_responses(404),
)
def register_version(
    name: str, body: RegisterVersion, services: ServicesDep, response: Response
) -> ModelVersionView:
    """Register a package folder already in S3 as the next version of `name`.

    The package is checked exactly as the CLI checks it (graph against preprocessing,
    the manifest's example run) before anything is registered.
    """
    version = packages.register(services, name, body)
    response.headers["Location"] = f"/v1/models/{name}"
    return registry.version_view(version)


@router.put("/{name}/aliases/{alias}", response_model=AliasView, responses=problem_responses(404))
def move_alias(name: str, alias: str, body: AliasUpdate, services: ServicesDep) -> AliasView:
    """Point `alias` at an existing version; new jobs naming the alias get that version."""
    with services.engine.begin() as conn:
        registry.set_alias(conn, name, alias, int(body.version))
    # Other processes hear of it from Postgres; this one forgets before answering.
    services.versions.clear()
    return AliasView(name=name, alias=alias, version=body.version)
