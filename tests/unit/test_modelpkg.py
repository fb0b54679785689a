"""inferfleet.models.package: a package folder is read only as JSON and ONNX, and checked."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from inferfleet.errors import ArtifactError
from inferfleet.models.package import read_package

REQUEST_SCHEMA = {
    "type": "object",
    "properties": {"x": {"type": "number"}},
    "required": ["x"],
}
OUTPUT_SCHEMA = {"type": "object", "properties": {"label": {"type": "integer"}}}


def manifest(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "name": "fraud",
        "model_file": "model.onnx",
        "request_schema": REQUEST_SCHEMA,
        "output_schema": OUTPUT_SCHEMA,
        "example": {"x": 1.5},
    }
    return {**fields, **changes}


def write_package(folder: Path, content: dict[str, Any] | None = None) -> Path:
    """A package in `folder`: the manifest and a placeholder graph (never parsed here)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps(manifest() if content is None else content))
    (folder / "model.onnx").write_bytes(b"\x08\x07onnx-placeholder")
    return folder


def test_a_valid_package_is_read_with_defaults(tmp_path: Path) -> None:
    result = read_package(write_package(tmp_path))

    assert result.name == "fraud"
    assert result.model_file == "model.onnx"
    assert result.request_schema == REQUEST_SCHEMA
    assert result.output_schema == OUTPUT_SCHEMA
    assert result.preprocessing == {"kind": "none"}
    assert result.preferred_batch_size == 1024
    assert result.raw == manifest()


def test_a_package_declares_its_preprocessing_and_batch_size(tmp_path: Path) -> None:
    content = manifest(
        preprocessing={"kind": "in-graph"}, batching={"preferred_batch_size": 2048}, extra=1
    )

    result = read_package(write_package(tmp_path, content))

    assert result.preprocessing == {"kind": "in-graph"}
    assert result.preferred_batch_size == 2048
    assert result.raw["extra"] == 1


@pytest.mark.parametrize(
    "name", ["model.pkl", "model.pickle", "scaler.joblib", "weights.pt", "weights.pth"]
)
def test_a_pickled_file_is_refused_by_name(tmp_path: Path, name: str) -> None:
    package = write_package(tmp_path)
    (package / name).write_bytes(b"\x80\x04.")

    with pytest.raises(ArtifactError, match=rf"^{name}: pickled files are refused"):
        read_package(package)


def test_other_files_beside_the_graph_are_allowed(tmp_path: Path) -> None:
    package = write_package(tmp_path)
    (package / "README.md").write_text("notes")

    assert read_package(package).name == "fraud"


def test_a_package_without_a_manifest_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"graph")

    with pytest.raises(ArtifactError, match=r"no manifest\.json"):
        read_package(tmp_path)


def test_a_manifest_that_is_not_json_is_refused(tmp_path: Path) -> None:
    package = write_package(tmp_path)
    (package / "manifest.json").write_text("{name: fraud")

    with pytest.raises(ArtifactError, match=r"manifest\.json: not UTF-8 JSON"):
        read_package(package)


@pytest.mark.parametrize("field", ["name", "model_file", "request_schema", "output_schema"])
def test_a_manifest_missing_a_required_field_is_refused_naming_it(
    tmp_path: Path, field: str
) -> None:
    content = manifest()
    del content[field]

    with pytest.raises(ArtifactError, match=rf"missing field '{field}'"):
        read_package(write_package(tmp_path, content))


@pytest.mark.parametrize(
    "schema",
    [
        pytest.param({"type": "nope"}, id="unknown-type"),
        pytest.param({"type": "object", "required": "x"}, id="required-not-a-list"),
        pytest.param({"minimum": "zero"}, id="minimum-not-a-number"),
    ],
)
def test_a_request_schema_that_is_not_json_schema_is_refused(
    tmp_path: Path, schema: dict[str, Any]
) -> None:
    with pytest.raises(ArtifactError, match="request_schema is not a JSON Schema"):
        read_package(write_package(tmp_path, manifest(request_schema=schema)))


def test_a_model_file_not_in_the_package_is_refused(tmp_path: Path) -> None:
    content = manifest(model_file="other.onnx")

    with pytest.raises(ArtifactError, match=r"'other\.onnx' is not in the package"):
        read_package(write_package(tmp_path, content))


def test_a_model_file_that_is_not_onnx_is_refused(tmp_path: Path) -> None:
    package = write_package(tmp_path, manifest(model_file="model.bin"))
    (package / "model.bin").write_bytes(b"graph")

    with pytest.raises(ArtifactError, match=r"model_file 'model\.bin' is not an \.onnx file"):
        read_package(package)


def test_a_model_file_outside_the_package_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere.onnx").write_bytes(b"graph")
    package = write_package(tmp_path / "fraud", manifest(model_file="../elsewhere.onnx"))

    with pytest.raises(ArtifactError):
        read_package(package)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("null", id="manifest-null"),
        pytest.param("42", id="manifest-number"),
        pytest.param("[]", id="manifest-array"),
        pytest.param(
            json.dumps(manifest(batching={"preferred_batch_size": 0})), id="batch-size-zero"
        ),
        pytest.param(
            json.dumps(manifest(batching={"preferred_batch_size": "lots"})),
            id="batch-size-not-a-number",
        ),
    ],
)
def test_a_malformed_manifest_is_an_artifact_error(tmp_path: Path, text: str) -> None:
    package = write_package(tmp_path)
    (package / "manifest.json").write_text(text)

    with pytest.raises(ArtifactError):
        read_package(package)


def test_a_manifest_that_is_not_utf8_is_an_artifact_error(tmp_path: Path) -> None:
    package = write_package(tmp_path)
    (package / "manifest.json").write_bytes(b"\xff\xfe{}")

    with pytest.raises(ArtifactError):
        read_package(package)


def test_an_example_that_breaks_the_request_schema_is_refused(tmp_path: Path) -> None:
    folder = write_package(tmp_path, manifest(example={"x": "not a number"}))

    with pytest.raises(ArtifactError, match="example does not satisfy request_schema"):
        read_package(folder)


def test_a_tokenizer_step_publishes_its_tokenizer_file(tmp_path: Path) -> None:
    step = {"kind": "tokenizer", "tokenizer_file": "vocab.json", "text_field": "x"}
    folder = write_package(tmp_path, manifest(preprocessing=step))
    (folder / "vocab.json").write_text("{}")

    assert read_package(folder).files == ["model.onnx", "vocab.json"]


@pytest.mark.parametrize("name", ["../vocab.json", "sub/vocab.json", "missing.json"])
def test_a_tokenizer_file_outside_or_missing_from_the_package_is_refused(
    tmp_path: Path, name: str
) -> None:
    step = {"kind": "tokenizer", "tokenizer_file": name}
    folder = write_package(tmp_path / "pkg", manifest(preprocessing=step))
    (tmp_path / "vocab.json").write_text("{}")

    with pytest.raises(ArtifactError, match=re.escape(repr(name))):
        read_package(folder)
