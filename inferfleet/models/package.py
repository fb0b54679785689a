"""The model package: a folder with `manifest.json` and the ONNX graph it names.

    minilm/
    ├── manifest.json   name, request schema, example, preprocessing, outputs, batching
    ├── model.onnx      the graph, with a dynamic batch axis
    └── tokenizer.json  a data asset the preprocessing step names (if any)

The manifest's fields:

| field | meaning |
| --- | --- |
| `name` | default model name (`[a-z0-9][a-z0-9._-]{0,62}`) |
| `model_file` | the ONNX graph's file name in the folder |
| `request_schema` | JSON Schema of one instance, as clients send it |
| `example` | one instance that satisfies `request_schema`; publishing runs it |
| `preprocessing` | `{"kind": "none"}` or a tokenizer step (see `inferfleet.models.preprocessing`) |
| `output_schema` | JSON Schema of one result; its properties are graph outputs |
| `batching` | hints, e.g. `{"preferred_batch_size": 64}` |

Only the files the manifest names are published. ONNX and JSON are the only formats
read; a pickled file anywhere in the folder refuses the package, and nothing is ever
unpickled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from inferfleet.errors import ArtifactError

MANIFEST = "manifest.json"
REFUSED_SUFFIXES = (".pkl", ".pickle", ".joblib", ".pt", ".pth")


@dataclass(frozen=True)
class Manifest:
    """What a package declares about itself."""

    name: str
    model_file: str
    request_schema: dict[str, Any]
    output_schema: dict[str, Any]
    preprocessing: dict[str, Any]
    assets: tuple[str, ...]
    example: dict[str, Any]
    preferred_batch_size: int
    raw: dict[str, Any]

    @property
    def files(self) -> list[str]:
        """The package files to publish: the graph and the assets preprocessing names."""
        return [self.model_file, *self.assets]


def read_manifest_files(folder: Path) -> list[str]:
    """The file names a package's manifest names, before the files themselves are there."""
    try:
        raw = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{MANIFEST}: cannot be read: {e}") from e
    if not isinstance(raw, dict):
        raise ArtifactError(f"{MANIFEST}: must be a JSON object, not {type(raw).__name__}")
    return _named_files(raw)


def _named_files(raw: dict[str, Any]) -> list[str]:
    """[model_file, *assets the preprocessing names], each checked to be a plain file name."""
    step = raw.get("preprocessing") or {"kind": "none"}
    if not isinstance(step, dict):
        raise ArtifactError(f"{MANIFEST}: preprocessing must be an object, not {step!r}")
    names = [raw.get("model_file")]
    if step.get("kind") == "tokenizer":
        names.append(step.get("tokenizer_file", "tokenizer.json"))
    checked = []
    for name in names:
        if not isinstance(name, str) or Path(name).name != name:
            raise ArtifactError(f"{MANIFEST}: {name!r} must be a file name in the package")
        checked.append(name)
    return checked


def read_package(folder: Path) -> Manifest:
    """Read and check a package folder; every problem names the file and the field."""
    _refuse_pickles(folder)
    raw = _load_manifest(folder)
    _check_schema_and_example(raw)
    model_file, assets = _package_files(folder, raw)
    return Manifest(
        name=raw["name"],
        model_file=model_file,
        request_schema=raw["request_schema"],
        output_schema=raw["output_schema"],
        preprocessing=raw.get("preprocessing") or {"kind": "none"},
        assets=assets,
        example=raw["example"],
        preferred_batch_size=_preferred_batch_size(raw),
        raw=raw,
    )


def _refuse_pickles(folder: Path) -> None:
    """No file in the package may be a pickle (`REFUSED_SUFFIXES`)."""
    for path in folder.rglob("*"):
        if path.suffix.lower() in REFUSED_SUFFIXES:
            raise ArtifactError(
                f"{path.relative_to(folder)}: pickled files are refused; ship ONNX and JSON only"
            )


def _load_manifest(folder: Path) -> dict[str, Any]:
    """The manifest, a JSON object with every required field."""
    try:
        raw = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ArtifactError(f"{folder}: no {MANIFEST}") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{folder / MANIFEST}: not UTF-8 JSON: {e}") from e
    if not isinstance(raw, dict):
        raise ArtifactError(f"{MANIFEST}: must be a JSON object, not {type(raw).__name__}")
    for key in ("name", "model_file", "request_schema", "output_schema", "example"):
        if key not in raw:
            raise ArtifactError(f"{MANIFEST}: missing field {key!r}")
    return raw


def _check_schema_and_example(raw: dict[str, Any]) -> None:
    """request_schema is a JSON Schema, and the example satisfies it."""
    try:
        Draft202012Validator.check_schema(raw["request_schema"])
    except SchemaError as e:
        raise ArtifactError(f"{MANIFEST}: request_schema is not a JSON Schema: {e.message}") from e
    errors = list(Draft202012Validator(raw["request_schema"]).iter_errors(raw["example"]))
    if errors:
        raise ArtifactError(
            f"{MANIFEST}: example does not satisfy request_schema: {errors[0].message}"
        )


def _package_files(folder: Path, raw: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    """(model_file, assets): the files the manifest names, each present in the package."""
    model_file, *assets = _named_files(raw)
    if not model_file.endswith(".onnx"):
        raise ArtifactError(f"{MANIFEST}: model_file {model_file!r} is not an .onnx file")
    for name in (model_file, *assets):
        if not (folder / name).is_file():
            raise ArtifactError(f"{MANIFEST}: {name!r} is not in the package")
    return model_file, tuple(assets)


def _preferred_batch_size(raw: dict[str, Any]) -> int:
    """batching.preferred_batch_size, a positive integer (default 1024)."""
    batching = raw.get("batching") or {}
    preferred = batching.get("preferred_batch_size", 1024) if isinstance(batching, dict) else None
    if not isinstance(preferred, int) or isinstance(preferred, bool) or preferred < 1:
        raise ArtifactError(
            f"{MANIFEST}: batching.preferred_batch_size must be a positive integer, "
            f"got {preferred!r}"
        )
    return preferred
