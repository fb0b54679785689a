"""inferfleet.models.registry.check_model_name: only names that can become topic names."""

from __future__ import annotations

import pytest

from inferfleet.errors import FieldError, InvalidInputError
from inferfleet.models.registry import check_model_name


@pytest.mark.parametrize(
    "name",
    [
        "fraud",
        "a",
        "0",
        "fraud-v2",
        "fraud_eu.west",
        "9lives",
        "a" * 63,
        "a-._0",
    ],
)
def test_a_good_name_is_accepted(name: str) -> None:
    check_model_name(name)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param("a" * 64, id="64-chars"),
        pytest.param("Fraud", id="upper-case"),
        pytest.param("-fraud", id="leading-dash"),
        pytest.param(".fraud", id="leading-dot"),
        pytest.param("_fraud", id="leading-underscore"),
        pytest.param("fraud model", id="space"),
        pytest.param("fraud/v2", id="slash"),
        pytest.param("fraud:v2", id="colon"),
        pytest.param("frâud", id="non-ascii"),
        pytest.param(" fraud", id="leading-space"),
        pytest.param("fraud\n", id="trailing-newline"),
    ],
)
def test_a_bad_name_is_refused_naming_the_field_and_value(name: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        check_model_name(name)

    assert caught.value.errors == [
        FieldError(("model",), "must match [a-z0-9][a-z0-9._-]{0,62}", "pattern", name)
    ]
