"""A loaded model: its ONNX Runtime session, its preprocessing, and a warm-up."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inferfleet.errors import ArtifactError
from inferfleet.models.preprocessing import (
    ONNX_DTYPES,
    Preprocessor,
    TensorSpec,
    Tokenize,
    make_preprocessor,
    mismatches,
)
from inferfleet.models.registry import ModelVersion
from inferfleet.models.sessions import graph_inputs, open_session
from inferfleet.settings import Settings

log = logging.getLogger(__name__)

WARM_UP_ROWS = 8


@dataclass
class LoadedModel:
    """An open session and what is needed to feed it and read it back."""

    name: str
    version: int
    session: Any
    inputs: list[TensorSpec]
    output_names: list[str]
    provider: str
    preprocess: Preprocessor
    batch_size: int
    # For text models: a row's input length, so a batch's calls can be bucketed by it.
    length: Callable[[Mapping[str, Any]], int] | None

    def run(self, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
        """One ONNX Runtime call over `rows`; returns one array per output."""
        feeds = self.preprocess(rows)
        result: list[Any] = self.session.run(
            self.output_names, {spec.name: feeds[spec.name] for spec in self.inputs}
        )
        return result


def open_model(version: ModelVersion, files: Mapping[str, Path], settings: Settings) -> LoadedModel:
    """Open `version` from its local files with the configured providers, and warm it up.

    The provider actually used is the session's first: ONNX Runtime falls back to CPU
    when a GPU provider cannot start, and that is what gets reported.
    """
    manifest = version.manifest
    session = open_session(files[manifest["model_file"]], settings)
    inputs = graph_inputs(session)
    preprocess = make_preprocessor(manifest.get("preprocessing") or {}, inputs, files)
    problems = mismatches(preprocess.outputs(), inputs)
    if problems:
        raise ArtifactError(f"{version.name} v{version.version}: " + "; ".join(problems))
    model = LoadedModel(
        name=version.name,
        version=version.version,
        session=session,
        inputs=inputs,
        output_names=[o.name for o in session.get_outputs()],
        provider=session.get_providers()[0],
        preprocess=preprocess,
        batch_size=int((manifest.get("batching") or {}).get("preferred_batch_size", 1024)),
        length=_text_length(preprocess.text_field) if isinstance(preprocess, Tokenize) else None,
    )
    try:
        warm_up(model, manifest.get("example"))
    except Exception as e:  # a graph that cannot run its own example cannot serve
        raise ArtifactError(f"{version.name} v{version.version} fails its warm-up: {e}") from e
    log.info("model %s v%d warm on %s", model.name, model.version, model.provider)
    return model


def _text_length(field: str) -> Callable[[Mapping[str, Any]], int]:
    def length(row: Mapping[str, Any]) -> int:
        value = row.get(field)
        return len(value) if isinstance(value, str) else 0

    return length


def warm_up(model: LoadedModel, example: Mapping[str, Any] | None) -> None:
    """Run a small batch so the first real batch pays no setup.

    Uses the manifest's example; packages registered without one get placeholder
    columns (zeros, empty strings), which tabular graphs accept.
    """
    if example is not None:
        model.run([example] * WARM_UP_ROWS)
        return
    feeds: dict[str, Any] = {}
    for spec in model.inputs:
        dtype = ONNX_DTYPES[spec.onnx_type]
        shape = (WARM_UP_ROWS,) + (1,) * (spec.rank - 1)
        feeds[spec.name] = (
            np.full(shape, "", dtype=object) if dtype is object else np.zeros(shape, dtype=dtype)
        )
    model.session.run(model.output_names, feeds)
