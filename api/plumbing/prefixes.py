"""The tenant's S3 area: the check on every S3 URI a client names (under one of the
tenant's prefixes, or 403), and new upload objects under its first prefix."""

from __future__ import annotations

from ulid import ULID

from api.plumbing.deps import Services
from api.plumbing.problems import ProblemError
from inferfleet.clients.objectstore import presigned_put
from inferfleet.errors import FieldError
from inferfleet.settings import Settings
from inferfleet.tenants.schemas import UploadCreated
from inferfleet.tenants.uris import allowed_uri, tenant_prefixes


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


def new_upload(services: Services, tenant: str, filename: str) -> UploadCreated:
    """A new object under the tenant's first prefix and a presigned `PUT` URL for it
    (`<prefix>uploads/<ulid>/<filename>`); 403 for a tenant without a prefix."""
    settings = services.settings
    prefixes = tenant_prefixes(settings.tenant_prefixes, settings.s3_bucket, tenant)
    if not prefixes:
        raise ProblemError(403, "Forbidden", f"tenant {tenant!r} has no S3 prefix")
    uri = f"{prefixes[0]}uploads/{str(ULID()).lower()}/{filename}"
    return UploadCreated(
        uri=uri, upload_url=presigned_put(services.s3, uri, settings.presign_expiry_s)
    )
