"""ONNX Runtime sessions: open with the configured providers, warm up, run a batch."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from inferfleet.errors import ArtifactError
from worker.batching import ONNX_DTYPES, InputSpec, stack_inputs

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """An open session and what is needed to feed it and read it back."""

    name: str
    version: int
    session: Any
    inputs: list[InputSpec]
    output_names: list[str]
    provider: str

    def run(self, rows: Sequence[dict[str, Any]]) -> list[Any]:
        """One ONNX Runtime call over `rows`; returns one array per output."""
        feeds = stack_inputs(rows, self.inputs)
        result: list[Any] = self.session.run(self.output_names, feeds)
        return result


def choose_providers(preferred: Sequence[str]) -> list[str]:
    """The preferred providers this build of ONNX Runtime offers, in order; CPU last."""
    available = set(ort.get_available_providers())
    chosen = [p for p in preferred if p in available]
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def open_model(
    name: str, version: int, path: Path, providers: Sequence[str], intra_op_threads: int
) -> LoadedModel:
    """Open `path` with the first provider that works; the one actually used is recorded.

    ONNX Runtime lists providers that are compiled in, not ones that work (a CUDA build
    on a machine without a GPU falls back to CPU), so only `session.get_providers()`
    is believed.
    """
    options = ort.SessionOptions()
    if intra_op_threads:
        options.intra_op_num_threads = intra_op_threads
    try:
        session = ort.InferenceSession(
            str(path), sess_options=options, providers=choose_providers(providers)
        )
    except Exception as e:  # ORT raises its own untyped errors for bad graphs
        raise ArtifactError(f"ONNX Runtime cannot load {name} v{version} ({path}): {e}") from e
    specs = [InputSpec(i.name, i.type, len(i.shape or [None])) for i in session.get_inputs()]
    model = LoadedModel(
        name=name,
        version=version,
        session=session,
        inputs=specs,
        output_names=[o.name for o in session.get_outputs()],
        provider=session.get_providers()[0],
    )
    warm_up(model)
    return model


def warm_up(model: LoadedModel, rows: int = 8) -> None:
    """Run a small batch of placeholder values so the first real batch pays no setup."""
    feeds: dict[str, Any] = {}
    for spec in model.inputs:
        dtype = ONNX_DTYPES[spec.onnx_type]
        shape = (rows,) + (1,) * (spec.rank - 1)
        feeds[spec.name] = (
            np.full(shape, "", dtype=object) if dtype is object else np.zeros(shape, dtype=dtype)
        )
    model.session.run(model.output_names, feeds)
    log.info("model %s v%d warm on %s", model.name, model.version, model.provider)
