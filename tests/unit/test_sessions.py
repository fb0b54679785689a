"""Provider choice and options for ONNX Runtime sessions (no GPU needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferfleet.errors import ArtifactError, ConfigError
from inferfleet.models import sessions
from inferfleet.models.sessions import (
    SessionConfig,
    choose_providers,
    on_gpu,
    open_session,
    provider_options,
)
from inferfleet.settings import load_settings

CUDA, TRT, CPU = "CUDAExecutionProvider", "TensorrtExecutionProvider", "CPUExecutionProvider"


@pytest.mark.parametrize(
    ("preferred", "available", "tensorrt", "chosen"),
    [
        ([TRT, CUDA, CPU], [TRT, CUDA, CPU], True, [TRT, CUDA, CPU]),
        # A GPU build lists TensorRT where its libraries are missing: it is left out.
        ([TRT, CUDA, CPU], [TRT, CUDA, CPU], False, [CUDA, CPU]),
        ([TRT, CUDA, CPU], [CUDA, CPU], True, [CUDA, CPU]),
        ([TRT, CUDA, CPU], [CPU], True, [CPU]),
        ([CUDA, TRT], [TRT, CUDA, CPU], True, [CUDA, TRT, CPU]),
        ([CUDA], [TRT, CUDA, CPU], True, [CUDA, CPU]),
        ([CPU, CUDA], [CUDA, CPU], False, [CUDA, CPU]),
        ([], [CUDA, CPU], True, [CPU]),
    ],
)
def test_choose_providers_keeps_order_skips_missing_and_ends_with_cpu(
    preferred: list[str], available: list[str], tensorrt: bool, chosen: list[str]
) -> None:
    assert choose_providers(preferred, available, tensorrt=tensorrt) == chosen


def test_the_default_order_is_tensorrt_cuda_cpu() -> None:
    assert load_settings().providers == [TRT, CUDA, CPU]
    assert list(SessionConfig().providers) == [TRT, CUDA, CPU]


def test_tensorrt_is_loadable_only_when_every_library_loads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Real lookups by the dynamic loader: the C library is there, a made-up one is not.
    sessions.tensorrt_loadable.cache_clear()
    monkeypatch.setattr(sessions, "TENSORRT_LIBRARIES", ("libc.so.6", "libm.so.6"))
    assert sessions.tensorrt_loadable()
    sessions.tensorrt_loadable.cache_clear()
    monkeypatch.setattr(sessions, "TENSORRT_LIBRARIES", ("libc.so.6", "libnvinfer-absent.so.0"))
    assert not sessions.tensorrt_loadable()
    sessions.tensorrt_loadable.cache_clear()


@pytest.mark.parametrize(
    ("provider", "gpu"),
    [(TRT, True), (CUDA, True), (CPU, False), ("AzureExecutionProvider", False)],
)
def test_only_tensorrt_and_cuda_sessions_are_on_a_gpu(provider: str, gpu: bool) -> None:
    assert on_gpu(provider) is gpu


def test_cuda_options_carry_the_device_and_memory_limit() -> None:
    settings = load_settings(gpu_device_id=1, gpu_mem_limit_bytes=2 << 30)

    assert provider_options(settings, CUDA) == {"device_id": 1, "gpu_mem_limit": 2 << 30}
    assert provider_options(load_settings(), CUDA) == {"device_id": 0}


def test_tensorrt_options_enable_the_engine_cache_when_a_folder_is_set(tmp_path: Path) -> None:
    settings = load_settings(trt_engine_cache_dir=tmp_path, trt_fp16=True)

    assert provider_options(settings, TRT) == {
        "device_id": 0,
        "trt_fp16_enable": True,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(tmp_path),
    }
    assert "trt_engine_cache_enable" not in provider_options(load_settings(), TRT)
    assert provider_options(settings, CPU) == {}


def test_plain_config_gives_the_same_options_as_the_settings(tmp_path: Path) -> None:
    settings = load_settings(
        gpu_device_id=2, gpu_mem_limit_bytes=1 << 30, trt_fp16=True, trt_engine_cache_dir=tmp_path
    )
    config = SessionConfig(
        gpu_device_id=2, gpu_mem_limit_bytes=1 << 30, trt_fp16=True, trt_engine_cache_dir=tmp_path
    )

    for provider in (TRT, CUDA, CPU):
        assert provider_options(config, provider) == provider_options(settings, provider)


def test_an_unknown_provider_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"INFERFLEET_PROVIDERS.*RocmExecutionProvider"):
        load_settings(providers=["RocmExecutionProvider", CPU])


def test_a_file_that_is_not_a_graph_is_an_artifact_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"not a graph")

    with pytest.raises(ArtifactError, match=r"cannot load broken\.onnx"):
        open_session(path, load_settings(), cpu_only=True)
