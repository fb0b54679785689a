"""What a model runs before its worker reports ready (pure: `worker.runtime` runs it).

On a GPU provider the first call at a new shape is slow: cuDNN and cuBLAS pick their
algorithms for it, TensorRT builds an engine whose profile covers it, the memory arena
grows to it. So a GPU warm-up runs the largest call the worker will make (the
manifest's `preferred_batch_size` rows; for a text model, each row as long as the
tokenizer keeps, `max_length` tokens) and the smallest (one row of the example; for a
text model, of its first word alone), so the first real batches do not pay that (on
CUDA, cuDNN still picks a convolution's algorithm once for each new shape in between).
On CPU there is nothing to tune, and a full-size call would only lengthen every start:
a few rows of the example are enough.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Rows of the example a CPU warm-up runs.
CPU_WARM_UP_ROWS = 8


@dataclass(frozen=True)
class TextField:
    """A text model's input field and the most tokens its tokenizer keeps."""

    name: str
    max_length: int


def long_text(text: str, words: int) -> str:
    """`text`'s words repeated until there are at least `words` of them.

    Every word gives at least one token, so `long_text(t, max_length)` is truncated to
    exactly `max_length` tokens: the longest sequence a call can pad to.
    """
    pieces = text.split() or ["warm"]
    repeats = -(-words // len(pieces))  # ceiling division
    return " ".join((pieces * repeats)[: max(words, len(pieces))])


def warm_up_batches(
    example: Mapping[str, Any], batch_size: int, on_gpu: bool, text: TextField | None
) -> list[list[Mapping[str, Any]]]:
    """The calls a warm-up makes, in order (module docstring): on a GPU, `batch_size`
    rows at the longest length, then one row at the shortest; on CPU, a few rows of the
    example."""
    if not on_gpu:
        return [[example] * CPU_WARM_UP_ROWS]
    longest, shortest = dict(example), dict(example)
    if text is not None and isinstance(example.get(text.name), str):
        longest[text.name] = long_text(example[text.name], text.max_length)
        shortest[text.name] = (example[text.name].split() or ["warm"])[0]
    return [[longest] * batch_size, [shortest]]


def placeholder_rows(batch_size: int, on_gpu: bool) -> list[int]:
    """The row counts of a warm-up without an example (placeholder columns)."""
    return [batch_size, 1] if on_gpu else [CPU_WARM_UP_ROWS]
