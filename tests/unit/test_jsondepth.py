"""inferfleet.jsondepth: one depth rule, counted without recursion."""

from __future__ import annotations

import json
from typing import Any

import pytest

from inferfleet.jsondepth import MAX_DEPTH, TooDeepError, depth, loads


def nested(levels: int, inner: Any = 1) -> Any:
    value = inner
    for i in range(levels):
        value = [value] if i % 2 else {"k": value}
    return value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, 0),
        ("text", 0),
        (None, 0),
        ({}, 1),
        ([], 1),
        ({"a": 1, "b": "x"}, 1),
        ({"a": [1]}, 2),
        ([[], [[]], {}], 3),
        ({"wide": [1] * 1000, "deep": nested(5)}, 6),
        (nested(MAX_DEPTH), MAX_DEPTH),
    ],
)
def test_depth_counts_arrays_and_objects(value: Any, expected: int) -> None:
    assert depth(value) == expected


def test_depth_stops_counting_past_the_limit_without_recursion() -> None:
    assert depth(nested(100_000), limit=64) == 65
    assert depth(nested(100_000), limit=10) == 11


def test_loads_accepts_the_limit_and_refuses_one_more() -> None:
    assert loads(json.dumps(nested(MAX_DEPTH))) == nested(MAX_DEPTH)
    with pytest.raises(TooDeepError, match=f"deeper than {MAX_DEPTH} levels"):
        loads(json.dumps(nested(MAX_DEPTH + 1)))


@pytest.mark.parametrize("levels", [1_000, 100_000])
def test_loads_refuses_any_depth_as_too_deep_never_recursion_error(levels: int) -> None:
    data = b"[" * levels + b"]" * levels
    with pytest.raises(TooDeepError) as raised:
        loads(data)
    assert raised.value.limit == MAX_DEPTH
    assert isinstance(raised.value, ValueError)


def test_loads_keeps_json_errors_as_they_are() -> None:
    with pytest.raises(json.JSONDecodeError):
        loads(b"{not json")
