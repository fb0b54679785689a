"""inferfleet.jsondepth: depth of parsed values, and the shape of raw JSON bytes."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from inferfleet import jsondepth
from inferfleet.jsondepth import MAX_DEPTH, Shape, TooDeepError, loads, shape, too_deep


def nested(depth: int) -> Any:
    """`depth` levels of alternating objects and arrays around a 1."""
    value: Any = 1
    for level in range(depth):
        value = {"a": value} if level % 2 else [value]
    return value


@pytest.mark.parametrize(
    ("value", "limit", "expected"),
    [
        pytest.param(1, 0, None, id="scalar"),
        pytest.param({}, 0, (), id="empty-object-at-0"),
        pytest.param({}, 1, None, id="empty-object-at-1"),
        pytest.param({"a": [1, {"c": [[]]}]}, 5, None, id="exactly-the-limit"),
        pytest.param({"a": [1, {"c": [[]]}]}, 4, ("a", 1, "c", 0), id="one-past"),
        pytest.param({"a": [1, {"c": [[]]}]}, 1, ("a",), id="first-level"),
        pytest.param({"x": 1, "y": [[]], "z": [[[]]]}, 2, ("y", 0), id="first-in-order"),
        pytest.param(nested(64), 64, None, id="64"),
        pytest.param(nested(65), 64, (0, "a") * 32, id="65"),
    ],
)
def test_too_deep_names_the_first_container_past_the_limit(
    value: Any, limit: int, expected: tuple[str | int, ...] | None
) -> None:
    assert too_deep(value, limit) == expected


def test_too_deep_walks_a_value_deeper_than_the_recursion_limit() -> None:
    assert too_deep(nested(5000), 64) is not None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", Shape(0, 0, 0), id="empty"),
        pytest.param("1", Shape(0, 0, 0), id="scalar"),
        pytest.param("[]", Shape(1, 0, 1), id="array"),
        pytest.param('{"a": [1, 2], "b": {"c": 1, "d": 2}}', Shape(2, 2, 6), id="second-level"),
        pytest.param('{"a": "{[[,,", "b": ["]]", ","]}', Shape(2, 1, 4), id="brackets-in-strings"),
        pytest.param(r'{"a\"[": ["\\", [[]]]}', Shape(4, 1, 5), id="escaped-quotes"),
        pytest.param(r'["\\\"[", [1]]', Shape(2, 0, 3), id="escaped-backslash-then-quote"),
        pytest.param(
            '{"model": "m", "items": [{}, {}, {}], "webhook": {"url": "u", "events": []}}',
            Shape(3, 3, 12),
            id="bulk",
        ),
    ],
)
def test_shape_reads_depth_and_second_level_commas_from_bytes(text: str, expected: Shape) -> None:
    assert shape(text.encode()) == expected


def parsed_shape(value: Any) -> Shape:
    """What `shape` must find, from the parsed value."""

    def depth(v: Any) -> int:
        children = v.values() if isinstance(v, dict) else v if isinstance(v, list) else None
        return 0 if children is None else 1 + max(map(depth, children), default=0)

    def values(v: Any) -> int:
        children = v.values() if isinstance(v, dict) else v if isinstance(v, list) else None
        if children is None:
            return 0
        return 1 + max(len(v) - 1, 0) + sum(map(values, children))

    top = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    commas = sum(len(v) - 1 for v in top if isinstance(v, dict | list) and v)
    return Shape(depth(value), commas, values(value))


def random_value(rng: random.Random, level: int = 0) -> Any:
    """Nested values whose strings are full of quotes, backslashes, brackets and commas."""
    tricky = ['a"b', "\\", '\\\\"', "]", "{", "x\\", ",", "[,]"]
    roll = rng.random()
    if level > 6 or roll < 0.3:
        return rng.choice([1, None, 2.5, *tricky])
    if roll < 0.65:
        return [random_value(rng, level + 1) for _ in range(rng.randint(0, 4))]
    return {
        rng.choice(tricky) + str(i): random_value(rng, level + 1) for i in range(rng.randint(0, 4))
    }


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 1 << 18])
def test_shape_agrees_with_the_parsed_value_across_chunk_boundaries(
    chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jsondepth, "_CHUNK", chunk)
    rng = random.Random(chunk)
    for _ in range(300):
        value = random_value(rng)
        data = json.dumps(value).encode()
        assert shape(data) == parsed_shape(value), data


def test_shape_counts_a_flood_of_bulk_items_without_parsing() -> None:
    body = b'{"model": "m", "items": [' + b",".join([b"{}"] * 200_000) + b"]}"

    assert shape(body) == Shape(3, 199_999, 200_002 + 200_000)


def test_too_deep_stops_at_the_first_level_past_the_limit_without_recursion() -> None:
    assert too_deep(nested(100_000), 64) is not None
    assert too_deep(nested(100_000), 10) == ("a", 0) * 5


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
