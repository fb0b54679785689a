"""How deeply a JSON value may nest: one rule for every door JSON comes in through.

A job's inputs (inline, or the object an `input_uri` names) and a batch line's inputs
may nest at most `MAX_DEPTH` arrays and objects deep. The limit keeps recursive code
downstream (schema validation, preprocessing, `json.dumps` of results) far from
Python's recursion limit, so no input can make it raise `RecursionError`.

Depth counts containers: a scalar is 0, `{}` and `[]` are 1, `{"a": [1]}` is 2.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64


class TooDeepError(ValueError):
    """Raised when JSON nests arrays and objects deeper than the limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"nested deeper than {limit} levels of arrays and objects")


def depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """The nesting depth of a parsed JSON value, counted without recursion.

    Counting stops once it passes `limit`: the answer is then `limit + 1`, whatever the
    true depth, so a caller compares it with `limit` and nothing more.
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        level += 1
        if level > limit:
            return limit + 1
        deepest = max(deepest, level)
        stack.extend((child, level) for child in children if isinstance(child, dict | list))
    return deepest


def loads(data: str | bytes, limit: int = MAX_DEPTH) -> Any:
    """`json.loads(data)`, refusing values nested deeper than `limit`.

    Raises `TooDeepError` (a `ValueError`) for too deep a value, however deep: never
    `RecursionError`. Text that is not JSON raises `json.JSONDecodeError` as usual.
    """
    try:
        value = json.loads(data)
    except RecursionError as e:  # deeper than the parser's own limit (about 1,000)
        raise TooDeepError(limit) from e
    if depth(value, limit) > limit:
        raise TooDeepError(limit)
    return value
