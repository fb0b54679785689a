"""A tiny text package for tests: a word-level tokenizer and a graph over its token IDs.

The graph takes `input_ids`, `attention_mask` and `token_type_ids` (int64,
`[batch, sequence]`) as a tokenizer step feeds them, and gives three outputs of
different shapes and types, so I/O binding is checked on each: `total` (float,
`[batch]`: the sum of each row's kept token IDs), `mask` (float, `[batch, sequence]`)
and `count` (int64, `[batch]`: each row's kept tokens).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace

WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "a", "cat"]
VOCAB = {"[PAD]": 0, "[UNK]": 1, **{word: i + 2 for i, word in enumerate(WORDS)}}
MAX_LENGTH = 16
BATCH = 32
EXAMPLE = {"text": "the quick brown fox"}


def tokenizer_json() -> str:
    tokenizer = Tokenizer(WordLevel(VOCAB, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()  # type: ignore[assignment]
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    return tokenizer.to_str()


def graph() -> onnx.ModelProto:
    ids = ["batch", "sequence"]
    inputs = [
        helper.make_tensor_value_info(name, TensorProto.INT64, ids)
        for name in ("input_ids", "attention_mask", "token_type_ids")
    ]
    nodes = [
        helper.make_node("Mul", ["input_ids", "attention_mask"], ["kept"]),
        helper.make_node("Add", ["kept", "token_type_ids"], ["kept_typed"]),
        helper.make_node("ReduceSum", ["kept_typed", "axis1"], ["sum"], keepdims=0),
        helper.make_node("Cast", ["sum"], ["total"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["attention_mask"], ["mask"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["attention_mask", "axis1"], ["count"], keepdims=0),
    ]
    initializers = [
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
    ]
    outputs = [
        helper.make_tensor_value_info("total", TensorProto.FLOAT, ["batch"]),
        helper.make_tensor_value_info("mask", TensorProto.FLOAT, ids),
        helper.make_tensor_value_info("count", TensorProto.INT64, ["batch"]),
    ]
    return helper.make_model(
        helper.make_graph(nodes, "tinytext", inputs, outputs, initializers),
        opset_imports=[helper.make_opsetid("", 17)],
        ir_version=8,
    )


def manifest() -> dict[str, object]:
    return {
        "name": "tinytext",
        "model_file": "model.onnx",
        "preprocessing": {
            "kind": "tokenizer",
            "tokenizer_file": "tokenizer.json",
            "text_field": "text",
            "max_length": MAX_LENGTH,
        },
        "request_schema": {"type": "object", "properties": {"text": {"type": "string"}}},
        "output_schema": {"type": "object"},
        "example": EXAMPLE,
        "batching": {"preferred_batch_size": BATCH},
    }


def build(folder: Path) -> dict[str, Path]:
    """Write the package into `folder`; its files by name."""
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(graph(), folder / "model.onnx")
    (folder / "tokenizer.json").write_text(tokenizer_json(), encoding="utf-8")
    (folder / "manifest.json").write_text(json.dumps(manifest()), encoding="utf-8")
    return {name: folder / name for name in ("model.onnx", "tokenizer.json", "manifest.json")}
