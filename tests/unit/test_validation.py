"""inferfleet.models.validation: every schema violation, located, with the value that was sent."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast

import pytest

from inferfleet.errors import FieldError
from inferfleet.models import validation
from inferfleet.models.validation import (
    SchemaValidator,
    request_validator,
    validate_instance,
    validator_for,
)
from tests.builds import fraud_build

REQUEST_SCHEMA: dict[str, Any] = fraud_build().REQUEST_SCHEMA
GOOD: dict[str, Any] = {
    "transaction_amount": 129.99,
    "merchant_category": "electronics",
    "user_account_age_days": 12,
    "hour_of_day": 3,
}


@pytest.fixture
def validator() -> SchemaValidator:
    return validator_for(REQUEST_SCHEMA)


def changed(**fields: Any) -> dict[str, Any]:
    return {**GOOD, **fields}


def without(field: str) -> dict[str, Any]:
    return {k: v for k, v in GOOD.items() if k != field}


@pytest.mark.parametrize(
    "instance",
    [
        GOOD,
        changed(transaction_amount=0),
        changed(transaction_amount=1_000_000),
        changed(hour_of_day=0),
        changed(hour_of_day=23),
        changed(user_account_age_days=36_500),
        changed(merchant_category="utilities"),
    ],
)
def test_a_valid_instance_has_no_errors(validator: SchemaValidator, instance: Any) -> None:
    assert validate_instance(validator, instance) == []


@pytest.mark.parametrize(
    ("instance", "loc", "type_", "input_"),
    [
        pytest.param(
            without("hour_of_day"), ("inputs", "hour_of_day"), "required", None, id="missing"
        ),
        pytest.param(
            changed(coupon="SAVE10"),
            ("inputs", "coupon"),
            "additionalProperties",
            "SAVE10",
            id="extra",
        ),
        pytest.param(
            changed(hour_of_day=24), ("inputs", "hour_of_day"), "maximum", 24, id="above-max"
        ),
        pytest.param(
            changed(transaction_amount=-0.01),
            ("inputs", "transaction_amount"),
            "minimum",
            -0.01,
            id="below-min",
        ),
        pytest.param(
            changed(user_account_age_days="12"),
            ("inputs", "user_account_age_days"),
            "type",
            "12",
            id="string-for-integer",
        ),
        pytest.param(
            changed(hour_of_day=3.5), ("inputs", "hour_of_day"), "type", 3.5, id="fraction"
        ),
        pytest.param(changed(hour_of_day=True), ("inputs", "hour_of_day"), "type", True, id="bool"),
        pytest.param(
            changed(transaction_amount=None),
            ("inputs", "transaction_amount"),
            "type",
            None,
            id="null",
        ),
        pytest.param(
            changed(merchant_category="casino"),
            ("inputs", "merchant_category"),
            "enum",
            "casino",
            id="enum",
        ),
        pytest.param([GOOD], ("inputs",), "type", [GOOD], id="not-an-object"),
    ],
)
def test_a_bad_instance_reports_where_what_and_the_value_sent(
    validator: SchemaValidator, instance: Any, loc: tuple[Any, ...], type_: str, input_: Any
) -> None:
    errors = validate_instance(validator, instance)

    assert [(e.loc, e.type, e.input) for e in errors] == [(loc, type_, input_)]
    assert errors[0].msg


def test_every_error_is_reported_sorted_by_location(validator: SchemaValidator) -> None:
    instance = changed(transaction_amount=-1, merchant_category="casino", hour_of_day=99)

    errors = validate_instance(validator, instance)

    assert [(e.loc, e.type, e.input) for e in errors] == [
        (("inputs", "hour_of_day"), "maximum", 99),
        (("inputs", "merchant_category"), "enum", "casino"),
        (("inputs", "transaction_amount"), "minimum", -1),
    ]


def test_two_extra_fields_are_reported_on_the_object(validator: SchemaValidator) -> None:
    instance = changed(coupon="SAVE10", note="hi")

    errors = validate_instance(validator, instance)

    assert len(errors) == 1
    assert errors[0].loc == ("inputs",)
    assert errors[0].type == "additionalProperties"
    assert errors[0].input == instance
    assert "'coupon', 'note'" in errors[0].msg


def test_each_missing_field_is_located_at_itself(validator: SchemaValidator) -> None:
    errors = validate_instance(validator, {"hour_of_day": 3})

    assert [e.loc for e in errors] == [
        ("inputs", "merchant_category"),
        ("inputs", "transaction_amount"),
        ("inputs", "user_account_age_days"),
    ]


def test_a_bulk_item_is_located_under_its_prefix(validator: SchemaValidator) -> None:
    errors = validate_instance(
        validator, changed(hour_of_day=-1, coupon="x"), prefix=("items", 50, "inputs")
    )

    assert errors == [
        FieldError(
            ("items", 50, "inputs", "coupon"),
            "Additional properties are not allowed ('coupon' was unexpected)",
            "additionalProperties",
            "x",
        ),
        FieldError(
            ("items", 50, "inputs", "hour_of_day"),
            "-1 is less than the minimum of 0",
            "minimum",
            -1,
        ),
    ]


def test_validators_are_cached_by_schema_content() -> None:
    reordered = dict(reversed(list(REQUEST_SCHEMA.items())))

    assert validator_for(reordered) is validator_for(REQUEST_SCHEMA)
    assert validator_for({"type": "string"}) is not validator_for(REQUEST_SCHEMA)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_number_is_refused(validator: SchemaValidator, value: float) -> None:
    instance = {**GOOD, "transaction_amount": value}

    errors = validate_instance(validator, instance)

    assert (("inputs", "transaction_amount"), "finite_number", str(value)) in [
        (e.loc, e.type, e.input) for e in errors
    ]
    assert {e.loc for e in errors} == {("inputs", "transaction_amount")}


def test_a_non_finite_number_is_found_at_any_depth() -> None:
    schema = {"type": "object", "properties": {"v": {"type": "array"}}}
    errors = validate_instance(validator_for(schema), {"v": [1.0, {"x": float("nan")}]})

    assert [e.loc for e in errors] == [("inputs", "v", 1, "x")]


def test_a_versions_validator_is_compiled_once_and_never_serialised_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    version = SimpleNamespace(
        name="v-cache",
        version=1,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        request_schema=REQUEST_SCHEMA,
    )
    first = request_validator(cast(Any, version))
    serialised: list[object] = []
    monkeypatch.setattr(validation.json, "dumps", lambda *a, **k: serialised.append(a))

    again = [request_validator(cast(Any, version)) for _ in range(3)]

    assert all(v is first for v in again)
    assert serialised == []
    assert validate_instance(first, {"transaction_amount": "x"})


def full_only(validator: SchemaValidator) -> SchemaValidator:
    return SchemaValidator(validator.full, None)


def test_the_fast_check_never_changes_an_answer(validator: SchemaValidator) -> None:
    """Valid, invalid and odd instances get exactly the errors jsonschema alone gives."""
    assert validator.fast is not None
    rng = random.Random(3)
    odd: list[Any] = [None, True, False, 0, -1, 1.5, 14.0, "", "x", [], {}, [1], float("nan")]
    instances = [
        {
            "transaction_amount": rng.choice([245.5, -3, "12", True, 1e9, 0]),
            "merchant_category": rng.choice(["electronics", "nope", 3, None]),
            "user_account_age_days": rng.choice([847, 847.0, 847.5, -1, True]),
            "hour_of_day": rng.choice([14, 24, "14", False]),
            **({"extra": rng.choice(odd)} if rng.random() < 0.2 else {}),
        }
        for _ in range(500)
    ] + odd
    for instance in instances:
        assert validate_instance(validator, instance) == validate_instance(
            full_only(validator), instance
        ), instance


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"n": {"enum": [0, 1]}}},  # True == 1 in Python
        {"type": "object", "properties": {"n": {"const": 1}}},
        {"type": "array", "uniqueItems": True},
        {"type": "number", "multipleOf": 0.1},
        {"type": "array", "prefixItems": [{"type": "string"}]},
        {"type": "array", "items": [{"type": "string"}]},
        {"type": "string", "format": "email"},
        {"$ref": "#/$defs/x", "$defs": {"x": {"type": "string"}}},
    ],
)
def test_schemas_whose_keywords_mean_something_else_are_checked_by_jsonschema_alone(
    schema: dict[str, Any],
) -> None:
    assert validator_for(schema).fast is None


def test_a_bool_is_not_a_member_of_a_numeric_enum() -> None:
    validator = validator_for({"type": "object", "properties": {"n": {"enum": [0, 1]}}})
    assert [e.type for e in validate_instance(validator, {"n": True}, ())] == ["enum"]
