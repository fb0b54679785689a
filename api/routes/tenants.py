"""Admin routes under /v1/tenants: rotating a tenant's webhook signing secret."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from api.plumbing.deps import ServicesDep, require_admin
from api.plumbing.problems import problem_responses
from inferfleet.tenants import keys
from inferfleet.tenants.schemas import SecretRotated

router = APIRouter(
    prefix="/v1/tenants",
    tags=["keys"],
    dependencies=[Depends(require_admin)],
    responses=problem_responses(403),
)


@router.post(
    "/{tenant}/webhook-secret", response_model=SecretRotated, responses=problem_responses(404)
)
def rotate_webhook_secret(tenant: str, services: ServicesDep) -> SecretRotated:
    """A new signing secret, shown once. Until `previous_secret_expires_at` every
    webhook carries signatures by both secrets, so receivers can switch over."""
    with services.engine.begin() as conn:
        secret, expires = keys.rotate_secret(conn, tenant, services.settings.secret_overlap_s)
    return SecretRotated(tenant=tenant, webhook_secret=secret, previous_secret_expires_at=expires)
