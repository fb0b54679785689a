"""How deep JSON may nest: one rule for every door JSON comes in through.

A job's inputs (inline, or the object an `input_uri` names) and a batch line's inputs
may nest at most `MAX_DEPTH` arrays and objects deep. The limit keeps recursive code
downstream (schema validation, preprocessing, `json.dumps` of results) far from
Python's recursion limit, so no input can make it raise `RecursionError`.

Depth counts arrays and objects: a scalar is 0 deep, `{}` and `[1]` are 1, `{"a": [2]}`
is 2. `too_deep` walks a parsed value without recursion; `loads` parses and refuses too
deep a value, never with `RecursionError`; `shape` reads the bytes of a document without
building any Python value for it, so a body can be refused before `json.loads` turns
30 MiB of `{},` into about 24 times as much memory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_DEPTH = 64

# Bytes scanned per numpy step: bounds the scan's own memory at a few MiB.
_CHUNK = 1 << 18
_QUOTE, _BACKSLASH, _COMMA = ord('"'), ord("\\"), ord(",")
_STEP = np.zeros(256, dtype=np.int32)
_STEP[[ord("{"), ord("[")]] = 1
_STEP[[ord("}"), ord("]")]] = -1


def too_deep(value: object, limit: int) -> tuple[str | int, ...] | None:
    """The path to the first array or object in `value` nested deeper than `limit`, or
    None when `value` is at most `limit` deep.

    The path starts below `value` (`()` when `value` itself is a container and `limit` is
    0). Containers below the first too-deep level are never visited.
    """
    stack: list[tuple[object, int, tuple[str | int, ...]]] = [(value, 1, ())]
    while stack:
        node, depth, path = stack.pop()
        if isinstance(node, dict):
            children: list[tuple[str | int, object]] = list(node.items())
        elif isinstance(node, list):
            children = list(enumerate(node))
        else:
            continue
        if depth > limit:
            return path
        stack.extend(
            (child, depth + 1, (*path, key))
            for key, child in reversed(children)
            if isinstance(child, dict | list)
        )
    return None


class TooDeepError(ValueError):
    """Raised when JSON nests arrays and objects deeper than the limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"nested deeper than {limit} levels of arrays and objects")


def loads(data: str | bytes, limit: int = MAX_DEPTH) -> Any:
    """`json.loads(data)`, refusing values nested deeper than `limit`.

    Raises `TooDeepError` (a `ValueError`) for too deep a value, however deep: never
    `RecursionError`. Text that is not JSON raises `json.JSONDecodeError` as usual.
    """
    try:
        value = json.loads(data)
    except RecursionError as e:  # deeper than the parser's own limit (about 1,000)
        raise TooDeepError(limit) from e
    if too_deep(value, limit) is not None:
        raise TooDeepError(limit)
    return value


@dataclass(frozen=True)
class Shape:
    """The nesting of a JSON document, read from its bytes.

    `depth`: the deepest nesting of arrays and objects. `second_level_commas`: the
    commas directly inside containers at depth 2, i.e. between the elements of the
    arrays (and members of the objects) that the top-level value holds. `values`: arrays
    and objects plus commas, about the number of Python objects parsing makes (each
    at most about 70 bytes, however short its text).
    """

    depth: int
    second_level_commas: int
    values: int


def shape(data: bytes) -> Shape:
    """The `Shape` of `data`, taken as JSON; strings are skipped, nothing else is checked.

    Invalid JSON gives some shape: the parser refuses it afterwards anyway.
    """
    deepest, commas, values = 0, 0, 0
    depth_carry, quotes_carry, run_carry = 0, 0, 0
    escapes = b"\\" in data
    for start in range(0, len(data), _CHUNK):
        chunk = np.frombuffer(
            data, dtype=np.uint8, count=min(_CHUNK, len(data) - start), offset=start
        )
        quote = chunk == _QUOTE
        if escapes:
            # A quote after an odd run of backslashes is escaped, part of its string.
            run, run_carry = _backslash_runs(chunk == _BACKSLASH, run_carry)
            quote &= (run & 1) == 0
        # A byte is inside a string when an odd number of real quotes precede it.
        quotes = np.cumsum(quote, dtype=np.int32) + np.int32(quotes_carry)
        outside = (quotes & 1) == 0
        step = _STEP[chunk] * outside
        depth = np.cumsum(step, dtype=np.int32) + np.int32(depth_carry)
        values += int(np.count_nonzero(step == 1))
        deepest = max(deepest, int(depth.max()))
        depth_carry, quotes_carry = int(depth[-1]), int(quotes[-1])
        separators = (chunk == _COMMA) & outside
        values += int(np.count_nonzero(separators))
        commas += int(np.count_nonzero(separators & (depth == 2)))
    return Shape(depth=deepest, second_level_commas=commas, values=values)


def _backslash_runs(
    backslash: np.ndarray[Any, np.dtype[np.bool_]], carry: int
) -> tuple[np.ndarray[Any, np.dtype[np.int32]], int]:
    """Per byte, the length of the run of backslashes just before it; and the run at the
    end, carried into the next chunk (`carry` is the one carried in)."""
    counted = np.cumsum(backslash, dtype=np.int32)
    # `counted` where the last byte that is not a backslash stands, up to each byte.
    base = np.maximum.accumulate(np.where(backslash, 0, counted))
    ending = counted - base  # backslashes ending at each byte, itself included
    ending[~np.logical_or.accumulate(~backslash)] += carry  # a run begun in the last chunk
    before = np.empty_like(ending)
    before[0] = carry
    before[1:] = ending[:-1]
    return before, int(ending[-1])
