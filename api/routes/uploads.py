"""The tenant's S3 area: presigned uploads.

Clients that cannot reach S3 with credentials of their own upload through
`POST /v1/uploads` (a presigned `PUT`), then name the returned `uri` in a job.
"""

from __future__ import annotations

from fastapi import APIRouter

from api.plumbing.deps import PrincipalDep, ServicesDep
from api.plumbing.prefixes import new_upload
from api.plumbing.problems import problem_responses
from inferfleet.tenants.schemas import UploadCreate, UploadCreated

router = APIRouter(
    prefix="/v1/uploads", tags=["uploads"], responses=problem_responses(401, 403, 422, 429, 503)
)


@router.post("", status_code=201, response_model=UploadCreated)
def create_upload(
    body: UploadCreate, services: ServicesDep, principal: PrincipalDep
) -> UploadCreated:
    """A new object under the tenant's first prefix and a presigned `PUT` URL for it.

    The URL expires after `INFERFLEET_PRESIGN_EXPIRY_S`; every call names a new object
    (`<prefix>uploads/<ulid>/<filename>`), so uploads never overwrite each other.
    """
    return new_upload(services, principal.tenant, body.filename)
