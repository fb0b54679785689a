"""The model package: a folder with `manifest.json` and the ONNX graph it names.

    fraud/
    ├── manifest.json   name, request schema, preprocessing, outputs, batching hints
    └── model.onnx      the graph, preprocessing included; a dynamic batch axis

Only ONNX and JSON are read from a package; nothing is ever unpickled.
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
    preferred_batch_size: int
    raw: dict[str, Any]


def read_package(folder: Path) -> Manifest:
    """Read and check a package folder; every problem names the file and the field."""
    for path in folder.iterdir():
        if path.suffix in REFUSED_SUFFIXES:
            raise ArtifactError(f"{path.name}: pickled files are refused; ship ONNX and JSON only")
    try:
        raw = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError as e:
        raise ArtifactError(f"{folder}: no {MANIFEST}") from e
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{folder / MANIFEST}: not JSON: {e}") from e
    for key in ("name", "model_file", "request_schema", "output_schema"):
        if key not in raw:
            raise ArtifactError(f"{MANIFEST}: missing field {key!r}")
    try:
        Draft202012Validator.check_schema(raw["request_schema"])
    except SchemaError as e:
        raise ArtifactError(f"{MANIFEST}: request_schema is not a JSON Schema: {e.message}") from e
    if not (folder / raw["model_file"]).is_file():
        raise ArtifactError(f"{MANIFEST}: model_file {raw['model_file']!r} is not in the package")
    if not str(raw["model_file"]).endswith(".onnx"):
        raise ArtifactError(f"{MANIFEST}: model_file {raw['model_file']!r} is not an .onnx file")
    return Manifest(
        name=raw["name"],
        model_file=raw["model_file"],
        request_schema=raw["request_schema"],
        output_schema=raw["output_schema"],
        preprocessing=raw.get("preprocessing", {"kind": "none"}),
        preferred_batch_size=int(raw.get("batching", {}).get("preferred_batch_size", 1024)),
        raw=raw,
    )
