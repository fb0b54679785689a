"""A loaded model: its ONNX Runtime session, its preprocessing, and a warm-up.

Nothing here imports the registry, the settings object or a service client: the
worker's execution path (`worker.inference`) runs where only ONNX Runtime, numpy and
tokenizers are installed (`bench/gpu.py` on a GPU machine).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
from inferfleet.models.sessions import (
    GPU_DEVICES,
    SessionSettings,
    graph_inputs,
    graph_outputs,
    on_gpu,
    open_session,
)
from worker.iobinding import binds, run_bound
from worker.warmup import TextField, placeholder_rows, warm_up_batches

if TYPE_CHECKING:
    from inferfleet.models.registry import ModelVersion

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """An open session and what is needed to feed it and read it back."""

    name: str
    version: int
    session: Any
    inputs: list[TensorSpec]
    output_names: list[str]
    # The provider the session runs on (its first), not the one asked for.
    provider: str
    preprocess: Preprocessor
    batch_size: int
    # For text models: a row's input length, so a batch's calls can be bucketed by it.
    length: Callable[[Mapping[str, Any]], int] | None
    # The device outputs are bound to when calls go through I/O binding
    # (`worker.iobinding`); None: calls use `session.run`.
    bound_device: str | None = None
    device_id: int = 0

    @property
    def on_gpu(self) -> bool:
        return on_gpu(self.provider)

    def run(self, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
        """One ONNX Runtime call over `rows`; returns one array per output."""
        made = self.preprocess(rows)
        feeds = {spec.name: made[spec.name] for spec in self.inputs}
        if self.bound_device is not None:
            return run_bound(
                self.session, feeds, self.output_names, self.bound_device, self.device_id
            )
        result: list[Any] = self.session.run(self.output_names, feeds)
        return result


def open_model(
    version: ModelVersion, files: Mapping[str, Path], settings: SessionSettings
) -> LoadedModel:
    """Open a registered `version` from its local files (`open_package`)."""
    return open_package(version.name, version.version, version.manifest, files, settings)


def open_package(
    name: str,
    version: int,
    manifest: Mapping[str, Any],
    files: Mapping[str, Path],
    settings: SessionSettings,
) -> LoadedModel:
    """Open a package from its local `files` with the configured providers, and warm it
    up (`worker.warmup`).

    The provider reported is the session's first: ONNX Runtime falls back to CPU when a
    GPU provider cannot start. Calls go through I/O binding when that provider is a GPU
    one and the graph takes no strings (`worker.iobinding.binds`).
    """
    session = open_session(files[manifest["model_file"]], settings)
    inputs = graph_inputs(session)
    preprocess = make_preprocessor(manifest.get("preprocessing") or {}, inputs, files)
    problems = mismatches(preprocess.outputs(), inputs)
    if problems:
        raise ArtifactError(f"{name} v{version}: " + "; ".join(problems))
    provider = session.get_providers()[0]
    outputs = graph_outputs(session)
    bound = binds(
        on_gpu(provider), [spec.onnx_type for spec in inputs], [o.onnx_type for o in outputs]
    )
    model = LoadedModel(
        name=name,
        version=version,
        session=session,
        inputs=inputs,
        output_names=[o.name for o in outputs],
        provider=provider,
        preprocess=preprocess,
        batch_size=int((manifest.get("batching") or {}).get("preferred_batch_size", 1024)),
        length=_text_length(preprocess.text_field) if isinstance(preprocess, Tokenize) else None,
        bound_device=GPU_DEVICES[provider] if bound else None,
        device_id=settings.gpu_device_id,
    )
    try:
        warm_up(model, manifest.get("example"))
    except Exception as e:  # a graph that cannot run its own example cannot serve
        raise ArtifactError(f"{name} v{version} fails its warm-up: {e}") from e
    log.info(
        "model %s v%d warm on %s (batch %d%s)",
        model.name,
        model.version,
        model.provider,
        model.batch_size,
        ", I/O binding" if model.bound_device is not None else "",
    )
    return model


def _text_length(field: str) -> Callable[[Mapping[str, Any]], int]:
    def length(row: Mapping[str, Any]) -> int:
        value = row.get(field)
        return len(value) if isinstance(value, str) else 0

    return length


def warm_up(model: LoadedModel, example: Mapping[str, Any] | None) -> None:
    """Run the calls `worker.warmup` plans, so the first real batch pays no setup.

    Uses the manifest's example; packages registered without one get placeholder
    columns (zeros, empty strings), which tabular graphs accept.
    """
    if example is not None:
        preprocess = model.preprocess
        text = (
            TextField(preprocess.text_field, preprocess.max_length)
            if isinstance(preprocess, Tokenize)
            else None
        )
        for rows in warm_up_batches(example, model.batch_size, model.on_gpu, text):
            model.run(rows)
        return
    for count in placeholder_rows(model.batch_size, model.on_gpu):
        feeds = {spec.name: _placeholder(spec, count) for spec in model.inputs}
        model.session.run(model.output_names, feeds)


def _placeholder(spec: TensorSpec, rows: int) -> Any:
    """`rows` rows of zeros (empty strings for a string input) shaped for `spec`."""
    dtype = ONNX_DTYPES[spec.onnx_type]
    shape = (rows,) + (1,) * (spec.rank - 1)
    return np.full(shape, "", dtype=object) if dtype is object else np.zeros(shape, dtype=dtype)
