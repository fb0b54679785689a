"""Opening ONNX Runtime sessions with the configured execution providers.

ONNX Runtime lists the providers it was built with, not ones that work: a CUDA build on
a machine without a GPU falls back to CPU. Only `session.get_providers()` tells which
provider a session runs on, and that is what callers report.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnxruntime as ort

from inferfleet.errors import ArtifactError
from inferfleet.models.preprocessing import TensorSpec
from inferfleet.settings import Settings

CPU = "CPUExecutionProvider"


def provider_options(settings: Settings, provider: str) -> dict[str, Any]:
    """The options `settings` sets for one provider."""
    if provider == "CUDAExecutionProvider":
        options: dict[str, Any] = {"device_id": settings.gpu_device_id}
        if settings.gpu_mem_limit_bytes:
            options["gpu_mem_limit"] = settings.gpu_mem_limit_bytes
        return options
    if provider == "TensorrtExecutionProvider":
        options = {"device_id": settings.gpu_device_id, "trt_fp16_enable": settings.trt_fp16}
        if settings.trt_engine_cache_dir is not None:
            options["trt_engine_cache_enable"] = True
            options["trt_engine_cache_path"] = str(settings.trt_engine_cache_dir)
        return options
    return {}


def choose_providers(preferred: Sequence[str], available: Sequence[str]) -> list[str]:
    """The preferred providers that `available` offers, in order, with CPU always last."""
    chosen = [p for p in preferred if p in available and p != CPU]
    return [*chosen, CPU]


def open_session(path: Path, settings: Settings, *, cpu_only: bool = False) -> Any:
    """A session over the graph at `path`; ArtifactError names the file if it won't load."""
    options = ort.SessionOptions()
    if settings.intra_op_threads:
        options.intra_op_num_threads = settings.intra_op_threads
    names = (
        [CPU] if cpu_only else choose_providers(settings.providers, ort.get_available_providers())
    )
    providers = [(name, provider_options(settings, name)) for name in names]
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as e:  # ONNX Runtime raises its own untyped errors for bad graphs
        raise ArtifactError(f"ONNX Runtime cannot load {path.name}: {e}") from e


def graph_inputs(session: Any) -> list[TensorSpec]:
    """The session's inputs as specs (name, element type, rank)."""
    return [TensorSpec(i.name, i.type, len(i.shape or [])) for i in session.get_inputs()]


def graph_outputs(session: Any) -> list[TensorSpec]:
    """The session's outputs as specs."""
    return [TensorSpec(o.name, o.type, len(o.shape or [])) for o in session.get_outputs()]
