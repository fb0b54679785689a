"""The check on every S3 URI a client names: under one of the tenant's prefixes, or 403."""

from __future__ import annotations

from api.plumbing.problems import ProblemError
from inferfleet.errors import FieldError
from inferfleet.settings import Settings
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
