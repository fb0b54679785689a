"""Which S3 URIs a tenant may name (API.md, "General"), as pure functions.

A tenant's prefixes are `settings.tenant_prefixes` with `{bucket}` and `{tenant}` filled
in. A URI a client names is compared in normalised form (empty and `.` segments dropped,
`..` resolved), and it must stay under one of the prefixes in every reading some layer
between here and the bytes might apply: as sent, percent-decoded (once, twice, ...),
and with backslashes taken as slashes. So `tenants/a/../b/`, `tenants/a/%2e%2e/b/` and
`tenants/a/..%5cb/` are all refused for tenant `a`. Callers store and use the normalised
form that was checked, never the string as sent.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import unquote

from inferfleet.errors import ConfigError
from inferfleet.jobs.claims import claim_uri

SCHEME = "s3://"
# S3's rules for bucket names (lower case, digits, dots, hyphens; 3 to 63 characters).
BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# A URI still changing after this many percent-decodings is refused outright.
MAX_DECODINGS = 4


def normalise(uri: str) -> str | None:
    """`uri` with empty and `.` segments dropped and `..` resolved; a trailing `/` kept.

    None when it is not an `s3://bucket/...` URI, holds control characters, or climbs
    above its bucket.
    """
    if not uri.startswith(SCHEME) or any(ord(c) < 0x20 or ord(c) == 0x7F for c in uri):
        return None
    bucket, _, key = uri[len(SCHEME) :].partition("/")
    if not BUCKET.fullmatch(bucket):
        return None
    parts: list[str] = []
    segments = key.split("/")
    for segment in segments:
        if segment in ("", "."):
            continue
        if segment == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(segment)
    folder = bool(parts) and segments[-1] in ("", ".", "..")
    return f"{SCHEME}{bucket}/" + "/".join(parts) + ("/" if folder else "")


def readings(uri: str) -> list[str] | None:
    """Every way a layer might read `uri`: as sent, percent-decoded until it stops
    changing, and each of those with backslashes as slashes. None if decoding never
    settles."""
    found = [uri]
    for _ in range(MAX_DECODINGS):
        decoded = unquote(found[-1])
        if decoded == found[-1]:
            break
        found.append(decoded)
    else:
        return None
    return found + [r.replace("\\", "/") for r in found if "\\" in r]


def tenant_prefixes(templates: Sequence[str], bucket: str, tenant: str) -> list[str]:
    """The normalised prefixes (each ending in `/`) that `tenant` may name.

    A tenant name that could move a prefix (`/`, `\\`, `%`, `.` or `..`) gets none, so
    every URI it names is refused. A template that does not make an `s3://bucket/`
    prefix is a ConfigError naming it.
    """
    if not _plain(tenant):
        return []
    prefixes = []
    for template in templates:
        prefix = normalise(template.replace("{bucket}", bucket).replace("{tenant}", tenant))
        if prefix is None:
            raise ConfigError(
                f"INFERFLEET_TENANT_PREFIXES entry {template!r} does not make an "
                "s3://bucket/prefix/ URI; no S3 URI can be checked until it is fixed"
            )
        prefixes.append(prefix if prefix.endswith("/") else prefix + "/")
    return prefixes


def allowed_uri(uri: str, prefixes: Sequence[str]) -> str | None:
    """The normalised `uri` if every reading of it names an object under one of
    `prefixes` (the prefix itself is not an object); None otherwise."""
    literal = normalise(uri)
    every = readings(uri)
    if literal is None or every is None:
        return None
    for reading in every:
        resolved = normalise(reading)
        if resolved is None or not any(
            resolved.startswith(p) and len(resolved) > len(p) for p in prefixes
        ):
            return None
    return literal


def _plain(name: str) -> bool:
    """Whether `name` can stand in a path without moving it (no `/`, `\\`, `%`, `.`, `..`)."""
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\%")


def job_input_uri(
    uri: str, templates: Sequence[str], bucket: str, tenant: str, job_id: str
) -> str | None:
    """The normalised `uri` that `tenant`'s job `job_id` may read: the job's own claim
    check, or an object under the tenant's prefixes (`allowed_uri`); None otherwise."""
    if _plain(job_id) and uri == claim_uri(bucket, job_id):
        return uri
    return allowed_uri(uri, tenant_prefixes(templates, bucket, tenant))
