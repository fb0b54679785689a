"""The tenant's S3 area: presigned uploads.

Clients that cannot reach S3 with credentials of their own upload through
`POST /v1/uploads` (a presigned `PUT`), then name the returned `uri` in a job.
"""

from __future__ import annotations

from fastapi import APIRouter
from ulid import ULID

from api.plumbing.deps import PrincipalDep, ServicesDep
from api.plumbing.problems import ProblemError, problem_responses
from inferfleet.clients.objectstore import presigned_put
from inferfleet.tenants.schemas import UploadCreate, UploadCreated
from inferfleet.tenants.uris import tenant_prefixes

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
    settings = services.settings
    prefixes = tenant_prefixes(settings.tenant_prefixes, settings.s3_bucket, principal.tenant)
    if not prefixes:
        raise ProblemError(403, "Forbidden", f"tenant {principal.tenant!r} has no S3 prefix")
    uri = f"{prefixes[0]}uploads/{str(ULID()).lower()}/{body.filename}"
    return UploadCreated(
        uri=uri, upload_url=presigned_put(services.s3, uri, settings.presign_expiry_s)
    )
