"""Opening ONNX Runtime sessions with the configured execution providers.

Providers are tried in the configured order (by default TensorRT, then CUDA, then CPU),
each with its options (`provider_options`). ONNX Runtime lists the providers it was
built with, not ones that work: a GPU build lists TensorRT whether or not TensorRT's
libraries are installed, and falls back to CPU when a GPU provider cannot start. So
TensorRT is asked for only where its libraries load (`tensorrt_loadable`), and only
`session.get_providers()` tells which provider a session runs on: that is what callers
report.

Nothing here needs the typed settings object itself: anything with the attributes of
`SessionSettings` does (`Settings`, or a `SessionConfig` where pydantic is not installed,
as in `bench/gpu.py`).
"""

from __future__ import annotations

import ctypes
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import onnxruntime as ort

from inferfleet.errors import ArtifactError
from inferfleet.models.preprocessing import TensorSpec

log = logging.getLogger(__name__)

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
# Providers whose sessions keep tensors in GPU memory, and the device name ONNX Runtime's
# I/O binding gives that memory.
GPU_DEVICES = {TENSORRT: "cuda", CUDA: "cuda"}
# The libraries the TensorRT provider of ONNX Runtime 1.2x/1.3x links (TensorRT 10).
TENSORRT_LIBRARIES = ("libnvinfer.so.10", "libnvonnxparser.so.10")


class SessionSettings(Protocol):
    """The settings a session is opened with (`inferfleet.settings.Settings` has them)."""

    @property
    def providers(self) -> Sequence[str]: ...
    @property
    def gpu_device_id(self) -> int: ...
    @property
    def gpu_mem_limit_bytes(self) -> int: ...
    @property
    def trt_engine_cache_dir(self) -> Path | None: ...
    @property
    def trt_fp16(self) -> bool: ...
    @property
    def intra_op_threads(self) -> int: ...


@dataclass(frozen=True)
class SessionConfig:
    """`SessionSettings` as plain data, for code that runs without the settings object."""

    providers: Sequence[str] = (TENSORRT, CUDA, CPU)
    gpu_device_id: int = 0
    gpu_mem_limit_bytes: int = 0  # 0 = no limit
    trt_engine_cache_dir: Path | None = None
    trt_fp16: bool = False
    intra_op_threads: int = 0  # 0 = ONNX Runtime's choice


def provider_options(settings: SessionSettings, provider: str) -> dict[str, Any]:
    """The options `settings` sets for one provider."""
    if provider == CUDA:
        options: dict[str, Any] = {"device_id": settings.gpu_device_id}
        if settings.gpu_mem_limit_bytes:
            options["gpu_mem_limit"] = settings.gpu_mem_limit_bytes
        return options
    if provider == TENSORRT:
        options = {"device_id": settings.gpu_device_id, "trt_fp16_enable": settings.trt_fp16}
        if settings.trt_engine_cache_dir is not None:
            options["trt_engine_cache_enable"] = True
            options["trt_engine_cache_path"] = str(settings.trt_engine_cache_dir)
        return options
    return {}


def choose_providers(
    preferred: Sequence[str], available: Sequence[str], *, tensorrt: bool
) -> list[str]:
    """The preferred providers that `available` offers, in order, with CPU always last.

    TensorRT is kept only when `tensorrt` says its libraries load: a GPU build of ONNX
    Runtime lists it either way.
    """
    chosen = [p for p in preferred if p in available and p != CPU and (tensorrt or p != TENSORRT)]
    return [*chosen, CPU]


@functools.cache
def tensorrt_loadable() -> bool:
    """Whether TensorRT's libraries load in this process (searched as the dynamic
    loader searches: LD_LIBRARY_PATH, the ldconfig cache, the system folders)."""
    for name in TENSORRT_LIBRARIES:
        try:
            ctypes.CDLL(name)
        except OSError:
            return False
    return True


def on_gpu(provider: str) -> bool:
    """Whether a session running on `provider` keeps its tensors in GPU memory."""
    return provider in GPU_DEVICES


def session_providers(settings: SessionSettings, *, cpu_only: bool = False) -> list[str]:
    """The providers a session asks for, in order: those configured that this ONNX
    Runtime build has and that can start here, then CPU."""
    if cpu_only:
        return [CPU]
    available = ort.get_available_providers()
    wanted = settings.providers
    return choose_providers(wanted, available, tensorrt=TENSORRT in wanted and tensorrt_loadable())


def open_session(path: Path, settings: SessionSettings, *, cpu_only: bool = False) -> Any:
    """A session over the graph at `path`; ArtifactError names the file if it won't load.

    When the session runs on another provider than the first it asked for (a GPU
    provider that could not start), a warning says so.
    """
    options = ort.SessionOptions()
    if settings.intra_op_threads:
        options.intra_op_num_threads = settings.intra_op_threads
    names = session_providers(settings, cpu_only=cpu_only)
    providers = [(name, provider_options(settings, name)) for name in names]
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as e:  # ONNX Runtime raises its own untyped errors for bad graphs
        raise ArtifactError(f"ONNX Runtime cannot load {path.name}: {e}") from e
    running = session.get_providers()[0]
    if running != names[0]:
        log.warning(
            "%s asked for %s but runs on %s: the provider could not start here",
            path.name,
            names[0],
            running,
        )
    return session


def graph_inputs(session: Any) -> list[TensorSpec]:
    """The session's inputs as specs (name, element type, rank)."""
    return [TensorSpec(i.name, i.type, len(i.shape or [])) for i in session.get_inputs()]


def graph_outputs(session: Any) -> list[TensorSpec]:
    """The session's outputs as specs."""
    return [TensorSpec(o.name, o.type, len(o.shape or [])) for o in session.get_outputs()]
