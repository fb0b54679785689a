"""Validate one instance against a model version's request schema (JSON Schema).

Every offending field is reported, each with its location and the value that was sent,
so a client can fix a request in one round trip.

Most instances are valid, so each schema is compiled twice: by `fastjsonschema` into
Python code that only says whether an instance is valid (some 30 times faster), and by
`jsonschema` (draft 2020-12), which finds every error. An instance the fast check
passes is valid; one it refuses is checked again by `jsonschema`, whose errors are the
answer. The fast check is made only for schemas whose every keyword means the same in
both (`SAME_MEANING`); others go to `jsonschema` alone.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import fastjsonschema
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from inferfleet.errors import FieldError

if TYPE_CHECKING:
    from inferfleet.models.registry import ModelVersion


# How many compiled validators a process keeps (each schema, each version).
MAX_COMPILED = 256
# Keywords draft 2020-12 and fastjsonschema's draft 7 read alike. Not among them:
# `format` (jsonschema does not check formats by default), `multipleOf` and `uniqueItems`
# (float and bool equality differ), the array form of `items` (now `prefixItems`), and
# `enum`/`const` with values other than strings (Python's `True == 1`). Checked below:
# `items`, `enum`, `const`, and the schemas under `properties` and `additionalProperties`.
SAME_MEANING = frozenset(
    {
        "$schema", "title", "description", "default", "examples", "$comment",
        "type", "properties", "required", "additionalProperties",
        "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
        "minLength", "maxLength", "pattern", "minItems", "maxItems",
        "minProperties", "maxProperties",
    }
)  # fmt: skip


@dataclass(frozen=True)
class SchemaValidator:
    """A schema compiled for every error (`full`) and, where it can be, for a fast
    yes-or-no (`fast`, raising on an invalid instance)."""

    full: Draft202012Validator
    fast: Callable[[Any], Any] | None


def _fast(schema: dict[str, Any]) -> Callable[[Any], Any] | None:
    if not _same_meaning(schema):
        return None
    plain = {k: v for k, v in schema.items() if k != "$schema"}
    plain["$schema"] = "http://json-schema.org/draft-07/schema#"
    compiled: Callable[[Any], Any] = fastjsonschema.compile(plain, use_formats=False)
    return compiled


def _same_meaning(schema: Any) -> bool:
    """Whether `schema` means the same to both validators, at every level."""
    if not isinstance(schema, dict):
        return isinstance(schema, bool)
    for keyword, value in schema.items():
        if keyword == "enum":
            same = isinstance(value, list) and all(isinstance(v, str) for v in value)
        elif keyword == "const":
            same = isinstance(value, str)
        elif keyword == "items":
            same = isinstance(value, dict) and _same_meaning(value)
        elif keyword == "properties":
            same = isinstance(value, dict) and all(_same_meaning(v) for v in value.values())
        elif keyword == "additionalProperties":
            same = _same_meaning(value)
        else:
            same = keyword in SAME_MEANING
        if not same:
            return False
    return True


@lru_cache(maxsize=MAX_COMPILED)
def _validator(schema_json: str) -> SchemaValidator:
    schema = json.loads(schema_json)
    return SchemaValidator(Draft202012Validator(schema), _fast(schema))


def validator_for(schema: dict[str, Any]) -> SchemaValidator:
    """A compiled validator, cached by the schema's content (versions are immutable)."""
    return _validator(json.dumps(schema, sort_keys=True))


_compiled: dict[tuple[str, int, object], SchemaValidator] = {}
_compiling = threading.Lock()


def request_validator(version: ModelVersion) -> SchemaValidator:
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
    validator: SchemaValidator, instance: Any, prefix: tuple[str | int, ...] = ("inputs",)
) -> list[FieldError]:
    """Every schema violation of `instance`, located under `prefix`; empty when valid."""
    errors: dict[tuple[tuple[str | int, ...], str], FieldError] = {}
    if not _passes_fast(validator, instance):
        errors = _schema_errors(validator.full, instance, prefix)
    for loc, value in _non_finite(instance, prefix):
        # JSON has no NaN or infinity, though Python's parser accepts them; neither can
        # be stored or fed to a model meaningfully.
        errors[(loc, "finite_number")] = FieldError(
            loc, "must be a finite number", "finite_number", str(value)
        )
    return sorted(errors.values(), key=lambda e: [str(part) for part in e.loc])


def _passes_fast(validator: SchemaValidator, instance: Any) -> bool:
    if validator.fast is None:
        return False
    try:
        validator.fast(instance)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


def _schema_errors(
    full: Draft202012Validator, instance: Any, prefix: tuple[str | int, ...]
) -> dict[tuple[tuple[str | int, ...], str], FieldError]:
    errors: dict[tuple[tuple[str | int, ...], str], FieldError] = {}
    for err in full.iter_errors(instance):
        for field_error in _to_field_errors(err, prefix):
            errors.setdefault((field_error.loc, field_error.type), field_error)
    return errors


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
