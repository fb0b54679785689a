"""Model versions as the API's submit path resolves them."""

from __future__ import annotations

from api.plumbing.deps import Services
from inferfleet.models.registry import ModelVersion, resolve


async def resolve_version(services: Services, model: str, ref: str) -> ModelVersion:
    """`model`'s version named by `ref` (a number or an alias); NotFoundError otherwise."""
    async with services.db.connect() as conn:
        return await conn.run_sync(lambda sync: resolve(sync, model, ref))
