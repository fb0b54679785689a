"""Model versions as the API's submit path resolves them, remembered per process.

A (model, number or alias) answer is kept until Postgres announces a change to the
registry (`inferfleet.clients.notify.MODELS`: a version registered or removed, an alias
set, moved or deleted, by any process) or for at most `cache_max_age_s`. Unknown models
and versions are not remembered.
"""

from __future__ import annotations

from api.plumbing.deps import Services
from inferfleet.caching import ChangeCache
from inferfleet.models.registry import ModelVersion, resolve

# How many (model, reference) answers one process remembers.
VERSIONS_CACHED = 1024


def version_cache(max_age_s: float) -> ChangeCache[tuple[str, str], ModelVersion]:
    """The cache `Services.versions` holds."""
    return ChangeCache(max_age_s, VERSIONS_CACHED)


async def resolve_version(services: Services, model: str, ref: str) -> ModelVersion:
    """`model`'s version named by `ref` (a number or an alias); NotFoundError otherwise."""
    cache = services.versions
    found = cache.get((model, ref))
    if found is not None:
        return found
    token = cache.token()
    async with services.reads.connect() as conn:
        version = await conn.run_sync(lambda sync: resolve(sync, model, ref))
    cache.put((model, ref), version, token)
    return version
