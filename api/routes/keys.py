"""Admin routes under /v1/keys: list, create and revoke API keys."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Depends

from api.plumbing.deps import ServicesDep, require_admin
from api.plumbing.problems import problem_responses
from inferfleet.tenants import keys
from inferfleet.tenants.schemas import KeyCreate, KeyCreated, KeyList, KeyView

router = APIRouter(
    prefix="/v1/keys",
    tags=["keys"],
    dependencies=[Depends(require_admin)],
    responses=problem_responses(403),
)


@router.get("", response_model=KeyList)
def list_keys(services: ServicesDep) -> KeyList:
    """Every key of every tenant; keys themselves are never shown again."""
    with services.engine.connect() as conn:
        return KeyList(items=[KeyView(**asdict(k)) for k in keys.list_keys(conn)])


@router.post("", status_code=201, response_model=KeyCreated)
def create_key(body: KeyCreate, services: ServicesDep) -> KeyCreated:
    """A new key for a tenant (created with its webhook secret if new); shown once."""
    with services.engine.begin() as conn:
        made = keys.create_key(conn, body.tenant, body.scope)
    return KeyCreated(**asdict(made.record), key=made.key, webhook_secret=made.webhook_secret)


@router.delete("/{key_id}", response_model=KeyView, responses=problem_responses(404))
def revoke_key(key_id: str, services: ServicesDep) -> KeyView:
    """Revoke a key: requests with it answer 401 from now on."""
    with services.engine.begin() as conn:
        revoked = keys.revoke(conn, key_id)
    # Other processes hear of it from Postgres; this one forgets the key before answering.
    services.keys.clear()
    return KeyView(**asdict(revoked))
