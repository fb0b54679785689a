"""The declared step that turns requests into a graph's inputs, and outputs back.

A package's manifest names one step:

- `{"kind": "none"}`: tabular columns. Each request field feeds the graph input of
  the same name; scalars become `[batch, 1]` columns when the input has rank 2, as
  skl2onnx graphs expect.
- `{"kind": "tokenizer", "tokenizer_file", "text_field", "max_length"}`: text. The
  `tokenizers` library encodes `text_field` with the package's `tokenizer.json`,
  padding each batch to its own longest sequence, and feeds `input_ids`,
  `attention_mask` and `token_type_ids` (int64, `[batch, sequence]`).

Publishing checks that the step produces every graph input with the graph's element
type and rank (`mismatches`), and workers build their feeds with the same step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tokenizers import Tokenizer

from inferfleet.errors import ArtifactError

# ONNX tensor element types and the numpy dtypes that feed them.
ONNX_DTYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
    "tensor(string)": object,
}


@dataclass(frozen=True)
class TensorSpec:
    """One graph input (or preprocessing output): name, ONNX element type, rank."""

    name: str
    onnx_type: str
    rank: int


class Preprocessor(Protocol):
    """Turns request instances into the arrays a graph is fed."""

    def outputs(self) -> list[TensorSpec]:
        """What the step produces."""
        ...

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """One array per output, rows stacked along the batch axis."""
        ...


def stack_columns(rows: Sequence[Mapping[str, Any]], specs: Sequence[TensorSpec]) -> dict[str, Any]:
    """One array per spec from the request field of the same name, rows stacked."""
    feeds: dict[str, Any] = {}
    for spec in specs:
        dtype = ONNX_DTYPES.get(spec.onnx_type)
        if dtype is None:
            raise ValueError(f"graph input {spec.name!r} has unsupported type {spec.onnx_type}")
        array = np.asarray([row[spec.name] for row in rows], dtype=dtype)
        while array.ndim < spec.rank:
            array = array[..., np.newaxis]
        feeds[spec.name] = array
    return feeds


@dataclass(frozen=True)
class Columns:
    """Tabular requests: each field feeds the graph input of the same name."""

    specs: tuple[TensorSpec, ...]

    def outputs(self) -> list[TensorSpec]:
        return list(self.specs)

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        return stack_columns(rows, self.specs)


TOKEN_OUTPUTS = ("input_ids", "attention_mask", "token_type_ids")


class Tokenize:
    """Text requests: one field tokenized, each batch padded to its longest sequence."""

    def __init__(self, tokenizer_json: str, text_field: str, max_length: int) -> None:
        self.text_field = text_field
        self.max_length = max_length
        self._tokenizer = Tokenizer.from_str(tokenizer_json)
        pad_token = self._tokenizer.padding["pad_token"] if self._tokenizer.padding else "[PAD]"
        pad_id = self._tokenizer.token_to_id(pad_token)
        if pad_id is None:
            raise ArtifactError(f"tokenizer has no padding token {pad_token!r}")
        # Shipped tokenizer.json files often pad to a fixed length; pad to the longest.
        self._tokenizer.no_padding()
        self._tokenizer.enable_padding(pad_id=pad_id, pad_token=pad_token)
        self._tokenizer.enable_truncation(max_length=max_length)

    def outputs(self) -> list[TensorSpec]:
        return [TensorSpec(name, "tensor(int64)", 2) for name in TOKEN_OUTPUTS]

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        texts = [row[self.text_field] for row in rows]
        if not all(isinstance(t, str) for t in texts):
            raise ValueError(f"{self.text_field!r} must be a string in every row")
        encodings = self._tokenizer.encode_batch(texts)
        return {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }


def make_preprocessor(
    step: Mapping[str, Any], graph_inputs: Sequence[TensorSpec], files: Mapping[str, Path]
) -> Preprocessor:
    """The step a manifest declares; `files` maps package file names to local paths."""
    kind = step.get("kind", "none")
    if kind == "none":
        return Columns(tuple(graph_inputs))
    if kind == "tokenizer":
        name = step.get("tokenizer_file", "tokenizer.json")
        if name not in files:
            raise ArtifactError(f"preprocessing names tokenizer_file {name!r}, not in the package")
        text_field = step.get("text_field", "text")
        max_length = step.get("max_length", 512)
        if not isinstance(max_length, int) or max_length < 1:
            raise ArtifactError(
                f"preprocessing max_length must be a positive integer: {max_length!r}"
            )
        try:
            return Tokenize(files[name].read_text(encoding="utf-8"), text_field, max_length)
        except Exception as e:  # the tokenizers library raises its own exception types
            raise ArtifactError(
                f"{name} is not a tokenizer the tokenizers library reads: {e}"
            ) from e
    raise ArtifactError(f"unknown preprocessing kind {kind!r}; expected 'none' or 'tokenizer'")


def mismatches(produced: Sequence[TensorSpec], graph_inputs: Sequence[TensorSpec]) -> list[str]:
    """Every graph input the step does not produce as the graph expects; empty if all match."""
    by_name = {spec.name: spec for spec in produced}
    problems = []
    for graph in graph_inputs:
        made = by_name.get(graph.name)
        if made is None:
            problems.append(f"graph input {graph.name!r} is not produced by the preprocessing")
        elif made.onnx_type != graph.onnx_type:
            problems.append(
                f"graph input {graph.name!r} is {graph.onnx_type}, "
                f"the preprocessing produces {made.onnx_type}"
            )
        elif made.rank != graph.rank:
            problems.append(
                f"graph input {graph.name!r} has rank {graph.rank}, "
                f"the preprocessing produces rank {made.rank}"
            )
    return problems


def split_outputs(names: Sequence[str], arrays: Sequence[Any], count: int) -> list[dict[str, Any]]:
    """Row i of every output, as JSON-ready values, for each of `count` rows."""
    columns = []
    for name, array in zip(names, arrays, strict=True):
        if len(array) != count:
            raise ValueError(f"output {name!r} has {len(array)} rows for {count} inputs")
        columns.append(array.tolist())
    return [
        {name: column[i] for name, column in zip(names, columns, strict=True)} for i in range(count)
    ]
