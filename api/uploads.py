"""The tenant's S3 area: presigned uploads, and the check on every S3 URI a client names.

Clients that cannot reach S3 with credentials of their own upload through
`POST /v1/uploads` (a presigned `PUT`), then name the returned `uri` in a job.
"""

from __future__ import annotations

from fastapi import APIRouter
from ulid import ULID

from api.deps import PrincipalDep, ServicesDep
from api.problems import ProblemError, problem_responses
from inferfleet.clients.objectstore import presigned_put
from inferfleet.errors import FieldError
from inferfleet.settings import Settings
from inferfleet.tenants.schemas import UploadCreate, UploadCreated
from inferfleet.tenants.uris import allowed_uri, tenant_prefixes

router = APIRouter(
    prefix="/v1/uploads", tags=["uploads"], responses=problem_responses(401, 403, 422, 429, 503)
)


def tenant_uri(settings: Settings, tenant: str, loc: tuple[str | int, ...], uri: str) -> str:
    """`uri` normalised, if it lies under one of `tenant`'s prefixes; 403 naming it if not.

    Store and use the returned form: it is the one that was checked.
    """
    prefixes = tenant_prefixes(settings.tenant_prefixes, settings.s3_bucket, tenant)
    checked = allowed_uri(uri, prefixes)
    if checked is None:
        msg = f"not under this tenant's S3 prefixes ({', '.join(prefixes) or 'none'})"
        raise ProblemError(
            403,
            "Forbidden",
            f"{'.'.join(map(str, loc))} {uri!r} is {msg}",
            errors=[FieldError(loc, msg, "s3_prefix_forbidden", uri)],
        )
    return checked


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
