"""Validate one instance against a model version's request schema (JSON Schema).

Every offending field is reported, each with its location and the value that was sent,
so a client can fix a request in one round trip.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from inferfleet.errors import FieldError

if TYPE_CHECKING:
    from inferfleet.models.registry import ModelVersion


# How many compiled validators a process keeps (each schema, each version).
MAX_COMPILED = 256


@lru_cache(maxsize=MAX_COMPILED)
def _validator(schema_json: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads(schema_json))


def validator_for(schema: dict[str, Any]) -> Draft202012Validator:
    """A compiled validator, cached by the schema's content (versions are immutable)."""
    return _validator(json.dumps(schema, sort_keys=True))


_compiled: dict[tuple[str, int, object], Draft202012Validator] = {}
_compiling = threading.Lock()


def request_validator(version: ModelVersion) -> Draft202012Validator:
    """The compiled validator of `version`'s request schema, kept per (model, version).

    A registered version never changes, so after its first use this is one dict look-up
    (no serialising of the schema). The registration time is part of the key: a version
    number removed and registered again is another version.
    """
    key = (version.name, version.version, version.created_at)
    found = _compiled.get(key)
    if found is None:
        found = validator_for(version.request_schema)
        with _compiling:
            while len(_compiled) >= MAX_COMPILED:
                _compiled.pop(next(iter(_compiled)))
            _compiled[key] = found
    return found


def _to_field_errors(err: ValidationError, prefix: tuple[str | int, ...]) -> list[FieldError]:
    loc = prefix + tuple(err.absolute_path)
    if err.validator == "required" and isinstance(err.instance, dict):
        # jsonschema reports missing properties on the object that lacks them, with the
        # whole `required` list; name each missing property at its own location.
        return [
            FieldError((*loc, name), f"{name!r} is a required property", "required", None)
            for name in err.validator_value
            if name not in err.instance
        ]
    value: Any = err.instance
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = set(err.schema.get("properties", {}))
        extra = sorted(k for k in err.instance if k not in allowed)
        if len(extra) == 1:
            loc += (extra[0],)
            value = err.instance[extra[0]]
    return [FieldError(loc=loc, msg=err.message, type=str(err.validator), input=value)]


def validate_instance(
    validator: Draft202012Validator, instance: Any, prefix: tuple[str | int, ...] = ("inputs",)
) -> list[FieldError]:
    """Every schema violation of `instance`, located under `prefix`; empty when valid."""
    errors: dict[tuple[tuple[str | int, ...], str], FieldError] = {}
    for err in validator.iter_errors(instance):
        for field_error in _to_field_errors(err, prefix):
            errors.setdefault((field_error.loc, field_error.type), field_error)
    for loc, value in _non_finite(instance, prefix):
        # JSON has no NaN or infinity, though Python's parser accepts them; neither can
        # be stored or fed to a model meaningfully.
        errors[(loc, "finite_number")] = FieldError(
            loc, "must be a finite number", "finite_number", str(value)
        )
    return sorted(errors.values(), key=lambda e: [str(part) for part in e.loc])


def _non_finite(
    value: Any, loc: tuple[str | int, ...]
) -> Iterator[tuple[tuple[str | int, ...], float]]:
    if isinstance(value, float) and not math.isfinite(value):
        yield loc, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _non_finite(item, (*loc, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _non_finite(item, (*loc, index))
