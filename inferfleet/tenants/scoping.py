"""Tenant scoping: which rows a caller may see (None: every tenant's, for admin keys)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, true


def owned_by(table: Table, tenant: str | None) -> Any:
    """The condition that a row of `table` belongs to `tenant` (None: any tenant, for
    admin keys)."""
    return true() if tenant is None else table.c.tenant == tenant


def may_see(tenant: str | None, owner: str) -> bool:
    """`owned_by` for a row already read (one query serving several tenants): whether a
    caller scoped to `tenant` may see a row of `owner`."""
    return tenant is None or owner == tenant
