"""The model registry in Postgres: numbered versions, and aliases that point at them.

Versions are immutable once registered; aliases (`production`, `canary`, …) move.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select, text
from sqlalchemy.dialects.postgresql import insert

from inferfleet.errors import FieldError, InvalidInputError, NotFoundError
from inferfleet.models.schemas import ModelFile, ModelSummary, ModelVersionView, ModelView
from inferfleet.tables import model_aliases, model_versions

MODEL_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
DEFAULT_ALIAS = "production"


@dataclass(frozen=True)
class ModelVersion:
    """One registered, immutable version of a model.

    `artifact_uri`, `sha256` and `size_bytes` describe the graph; `files` holds every
    file of the package by name, the graph included.
    """

    name: str
    version: int
    artifact_uri: str
    sha256: str
    size_bytes: int
    request_schema: dict[str, Any]
    output_schema: dict[str, Any]
    manifest: dict[str, Any]
    files: dict[str, ModelFile]
    created_at: datetime


def check_model_name(name: str) -> None:
    """Refuse names that cannot become topic names."""
    if not MODEL_NAME.fullmatch(name):
        raise InvalidInputError(
            [FieldError(("model",), "must match [a-z0-9][a-z0-9._-]{0,62}", "pattern", name)]
        )


def _row_to_version(row: Any) -> ModelVersion:
    return ModelVersion(
        name=row.name,
        version=row.version,
        artifact_uri=row.artifact_uri,
        sha256=row.sha256,
        size_bytes=row.size_bytes,
        request_schema=row.request_schema,
        output_schema=row.output_schema,
        manifest=row.manifest,
        files={name: ModelFile(**ref) for name, ref in row.files.items()},
        created_at=row.created_at,
    )


def get_version(conn: Connection, name: str, version: int) -> ModelVersion:
    """The registered version, or NotFoundError."""
    row = conn.execute(
        select(model_versions).where(
            model_versions.c.name == name, model_versions.c.version == version
        )
    ).one_or_none()
    if row is None:
        raise NotFoundError(f"model {name!r} has no version {version}")
    return _row_to_version(row)


def is_version_number(ref: str) -> bool:
    """Whether `ref` names a version (`"3"`) rather than an alias: ASCII digits only.

    `str.isdigit` is not enough: it holds for `"³"`, which `int` refuses.
    """
    return ref.isascii() and ref.isdigit()


def resolve(conn: Connection, name: str, ref: str = DEFAULT_ALIAS) -> ModelVersion:
    """Resolve a version number (`"3"`) or an alias (`"production"`) to a version."""
    if is_version_number(ref):
        return get_version(conn, name, int(ref))
    version = conn.execute(
        select(model_aliases.c.version).where(
            model_aliases.c.name == name, model_aliases.c.alias == ref
        )
    ).scalar_one_or_none()
    if version is None:
        known = conn.execute(
            select(func.count()).select_from(model_versions).where(model_versions.c.name == name)
        ).scalar_one()
        if not known:
            raise NotFoundError(f"no model named {name!r}")
        raise NotFoundError(f"model {name!r} has no alias {ref!r}")
    return get_version(conn, name, version)


def register(
    conn: Connection,
    name: str,
    *,
    manifest: dict[str, Any],
    files: dict[str, ModelFile],
) -> ModelVersion:
    """Register the next version of `name` (1, 2, …) and return it.

    A transaction-scoped advisory lock per name makes concurrent registrations take
    consecutive numbers instead of colliding.
    """
    check_model_name(name)
    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:n))"), {"n": f"model:{name}"})
    latest = conn.execute(
        select(func.max(model_versions.c.version)).where(model_versions.c.name == name)
    ).scalar_one()
    version = (latest or 0) + 1
    graph = files[manifest["model_file"]]
    conn.execute(
        model_versions.insert().values(
            name=name,
            version=version,
            artifact_uri=graph.uri,
            sha256=graph.sha256,
            size_bytes=graph.size_bytes,
            files={n: ref.model_dump() for n, ref in files.items()},
            request_schema=manifest["request_schema"],
            output_schema=manifest["output_schema"],
            manifest=manifest,
        )
    )
    return get_version(conn, name, version)


def set_alias(conn: Connection, name: str, alias: str, version: int) -> None:
    """Point `alias` at `version` (which must exist)."""
    if is_version_number(alias):
        raise InvalidInputError(
            [FieldError(("alias",), "alias names are not numbers", "value_error", alias)]
        )
    get_version(conn, name, version)
    stmt = insert(model_aliases).values(name=name, alias=alias, version=version)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["name", "alias"],
            set_={"version": stmt.excluded.version, "updated_at": func.now()},
        )
    )


def list_versions(conn: Connection, name: str | None = None) -> list[ModelVersion]:
    """Every registered version (of `name`, if given), by name then number."""
    query = select(model_versions).order_by(model_versions.c.name, model_versions.c.version)
    if name is not None:
        query = query.where(model_versions.c.name == name)
    return [_row_to_version(r) for r in conn.execute(query)]


def aliases(conn: Connection, name: str) -> dict[str, int]:
    """The aliases of `name` and the versions they point at."""
    rows = conn.execute(
        select(model_aliases.c.alias, model_aliases.c.version).where(model_aliases.c.name == name)
    )
    return {r.alias: r.version for r in rows}


def version_view(v: ModelVersion) -> ModelVersionView:
    """The API shape of a version."""
    return ModelVersionView(
        name=v.name,
        version=str(v.version),
        files=v.files,
        preprocessing=v.manifest.get("preprocessing") or {"kind": "none"},
        request_schema=v.request_schema,
        output_schema=v.output_schema,
        example=v.manifest.get("example"),
        created_at=v.created_at,
    )


def describe(conn: Connection, name: str) -> ModelView:
    """A model's versions and aliases, or NotFoundError."""
    versions = list_versions(conn, name)
    if not versions:
        raise NotFoundError(f"no model named {name!r}")
    return ModelView(
        name=name,
        aliases={a: str(n) for a, n in sorted(aliases(conn, name).items())},
        versions=[version_view(v) for v in versions],
    )


def summaries(conn: Connection) -> list[ModelSummary]:
    """One line per model: its aliases and latest version."""
    latest: dict[str, int] = {}
    for v in list_versions(conn):
        latest[v.name] = v.version
    return [
        ModelSummary(
            name=name,
            aliases={a: str(n) for a, n in sorted(aliases(conn, name).items())},
            latest_version=str(version),
        )
        for name, version in latest.items()
    ]
