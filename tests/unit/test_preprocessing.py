"""inferfleet.models.preprocessing: request rows to graph feeds, and graph outputs back to rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inferfleet.errors import ArtifactError
from inferfleet.models.preprocessing import (
    Columns,
    TensorSpec,
    Tokenize,
    make_preprocessor,
    mismatches,
    split_outputs,
    stack_columns,
)

# stack_columns


@pytest.mark.parametrize(
    ("onnx_type", "values", "dtype"),
    [
        ("tensor(float)", [1.5, 2, 3.25], np.float32),
        ("tensor(double)", [1.5, 2, 3.25], np.float64),
        ("tensor(int64)", [1, 2, 3], np.int64),
        ("tensor(int32)", [1, 2, 3], np.int32),
        ("tensor(bool)", [True, False, True], np.bool_),
        ("tensor(string)", ["grocery", "travel", ""], np.object_),
    ],
)
@pytest.mark.parametrize(("rank", "shape"), [(1, (3,)), (2, (3, 1))])
def test_stack_columns_stacks_scalars_along_the_batch_axis(
    onnx_type: str, values: list[Any], dtype: Any, rank: int, shape: tuple[int, ...]
) -> None:
    rows = [{"x": v} for v in values]

    feeds = stack_columns(rows, [TensorSpec("x", onnx_type, rank)])

    assert list(feeds) == ["x"]
    assert feeds["x"].dtype == dtype
    assert feeds["x"].shape == shape
    assert feeds["x"].ravel().tolist() == values


def test_stack_columns_feeds_each_graph_input_from_the_field_of_its_name() -> None:
    rows = [
        {"amount": 10.0, "category": "travel", "ignored": "x"},
        {"amount": 20.5, "category": "grocery", "ignored": "y"},
    ]
    specs = [TensorSpec("category", "tensor(string)", 2), TensorSpec("amount", "tensor(float)", 2)]

    feeds = stack_columns(rows, specs)

    assert set(feeds) == {"amount", "category"}
    assert feeds["amount"].tolist() == [[10.0], [20.5]]
    assert feeds["category"].tolist() == [["travel"], ["grocery"]]


def test_stack_columns_keeps_vector_instances_as_rows() -> None:
    rows = [{"v": [1.0, 2.0, 3.0]}, {"v": [4.0, 5.0, 6.0]}]

    feeds = stack_columns(rows, [TensorSpec("v", "tensor(float)", 2)])

    assert feeds["v"].shape == (2, 3)


def test_stack_columns_refuses_an_unsupported_type_naming_the_input() -> None:
    with pytest.raises(ValueError, match=r"'pixels' has unsupported type tensor\(float16\)"):
        stack_columns([{"pixels": 1.0}], [TensorSpec("pixels", "tensor(float16)", 2)])


# split_outputs


def test_split_outputs_gives_row_i_of_every_output_as_json_ready_values() -> None:
    labels = np.array([0, 1, 1], dtype=np.int64)
    probabilities = np.array([[0.9, 0.1], [0.25, 0.75], [0.5, 0.5]], dtype=np.float32)

    rows = split_outputs(["label", "probabilities"], [labels, probabilities], 3)

    assert [r["label"] for r in rows] == [0, 1, 1]
    assert rows[1]["probabilities"] == [0.25, 0.75]
    assert rows[0]["probabilities"] == pytest.approx([0.9, 0.1])
    for row in rows:
        assert type(row["label"]) is int
        assert all(type(p) is float for p in row["probabilities"])
    assert json.loads(json.dumps(rows)) == rows


def test_split_outputs_of_no_rows_is_empty() -> None:
    assert split_outputs(["label"], [np.array([], dtype=np.int64)], 0) == []


def test_split_outputs_refuses_an_output_with_the_wrong_row_count() -> None:
    labels = np.array([0, 1, 1])
    scores = np.array([0.1, 0.2])

    with pytest.raises(ValueError, match=r"output 'score' has 2 rows for 3 inputs"):
        split_outputs(["label", "score"], [labels, scores], 3)


def test_split_outputs_refuses_more_names_than_outputs() -> None:
    with pytest.raises(ValueError, match="zip"):
        split_outputs(["label", "probabilities"], [np.array([0])], 1)


# Tokenize


def tiny_tokenizer_json(pad_to: int | None = 16) -> str:
    """A word-level tokenizer that, like shipped ones, pads to a fixed length."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "hello": 4, "world": 5}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    if pad_to:
        tok.enable_padding(length=pad_to, pad_id=0, pad_token="[PAD]")
    return tok.to_str()


def test_tokenize_pads_each_batch_to_its_own_longest_sequence() -> None:
    step = Tokenize(tiny_tokenizer_json(), text_field="text", max_length=32)

    feeds = step([{"text": "hello"}, {"text": "hello world world"}])

    assert feeds["input_ids"].tolist() == [[2, 4, 3, 0, 0], [2, 4, 5, 5, 3]]
    assert feeds["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert feeds["token_type_ids"].tolist() == [[0] * 5, [0] * 5]
    assert {a.dtype for a in feeds.values()} == {np.dtype(np.int64)}


def test_tokenize_truncates_at_max_length() -> None:
    step = Tokenize(tiny_tokenizer_json(), text_field="text", max_length=4)

    feeds = step([{"text": "hello world hello world hello"}])

    assert feeds["input_ids"].shape == (1, 4)


def test_tokenize_refuses_a_row_without_text() -> None:
    step = Tokenize(tiny_tokenizer_json(), text_field="text", max_length=8)

    with pytest.raises(ValueError, match="'text' must be a string"):
        step([{"text": 3}])


def test_tokenize_outputs_are_int64_matrices() -> None:
    step = Tokenize(tiny_tokenizer_json(pad_to=None), text_field="text", max_length=8)

    assert step.outputs() == [
        TensorSpec("input_ids", "tensor(int64)", 2),
        TensorSpec("attention_mask", "tensor(int64)", 2),
        TensorSpec("token_type_ids", "tensor(int64)", 2),
    ]


# make_preprocessor and mismatches

GRAPH = [TensorSpec("amount", "tensor(float)", 2), TensorSpec("category", "tensor(string)", 2)]


def test_no_preprocessing_feeds_the_graph_inputs_themselves() -> None:
    step = make_preprocessor({"kind": "none"}, GRAPH, {})

    assert step == Columns(tuple(GRAPH))
    assert mismatches(step.outputs(), GRAPH) == []


def test_a_tokenizer_step_reads_its_file(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text(tiny_tokenizer_json())
    step = make_preprocessor(
        {"kind": "tokenizer", "text_field": "q", "max_length": 8},
        [],
        {"tokenizer.json": tmp_path / "tokenizer.json"},
    )

    assert step({"q": "world"} for _ in range(1))["input_ids"].tolist() == [[2, 5, 3]]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("step", "files", "message"),
    [
        ({"kind": "resize"}, {}, "unknown preprocessing kind 'resize'"),
        ({"kind": "tokenizer"}, {}, "tokenizer_file 'tokenizer.json', not in the package"),
        ({"kind": "tokenizer", "max_length": 0}, {"tokenizer.json": None}, "max_length"),
        ({"kind": "tokenizer"}, {"tokenizer.json": "garbage"}, "not a tokenizer"),
    ],
)
def test_a_bad_step_is_an_artifact_error(
    tmp_path: Path, step: dict[str, Any], files: dict[str, Any], message: str
) -> None:
    paths = {}
    for name, content in files.items():
        paths[name] = tmp_path / name
        paths[name].write_text(content if content is not None else tiny_tokenizer_json())

    with pytest.raises(ArtifactError, match=message):
        make_preprocessor(step, [], paths)


@pytest.mark.parametrize(
    ("produced", "problem"),
    [
        ([GRAPH[0]], "graph input 'category' is not produced by the preprocessing"),
        (
            [GRAPH[0], TensorSpec("category", "tensor(int64)", 2)],
            "graph input 'category' is tensor(string), the preprocessing produces tensor(int64)",
        ),
        (
            [GRAPH[0], TensorSpec("category", "tensor(string)", 1)],
            "graph input 'category' has rank 2, the preprocessing produces rank 1",
        ),
    ],
)
def test_mismatches_name_the_input_and_what_differs(
    produced: list[TensorSpec], problem: str
) -> None:
    assert mismatches(produced, GRAPH) == [problem]


def test_extra_preprocessing_outputs_are_no_mismatch() -> None:
    graph = [TensorSpec("input_ids", "tensor(int64)", 2)]
    tokens = Tokenize(tiny_tokenizer_json(), "text", 8).outputs()

    assert mismatches(tokens, graph) == []
