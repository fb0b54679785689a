"""Provider choice and options for ONNX Runtime sessions (no GPU needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferfleet.errors import ArtifactError, ConfigError
from inferfleet.models.sessions import choose_providers, open_session, provider_options
from inferfleet.settings import load_settings

CUDA, TRT, CPU = "CUDAExecutionProvider", "TensorrtExecutionProvider", "CPUExecutionProvider"


@pytest.mark.parametrize(
    ("preferred", "available", "chosen"),
    [
        ([TRT, CUDA, CPU], [TRT, CUDA, CPU], [TRT, CUDA, CPU]),
        ([TRT, CUDA, CPU], [CPU], [CPU]),
        ([CUDA], [CUDA, CPU], [CUDA, CPU]),
        ([CPU, CUDA], [CUDA, CPU], [CUDA, CPU]),
        ([], [CUDA, CPU], [CPU]),
    ],
)
def test_choose_providers_keeps_order_skips_missing_and_ends_with_cpu(
    preferred: list[str], available: list[str], chosen: list[str]
) -> None:
    assert choose_providers(preferred, available) == chosen


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


def test_an_unknown_provider_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"INFERFLEET_PROVIDERS.*RocmExecutionProvider"):
        load_settings(providers=["RocmExecutionProvider", CPU])


def test_a_file_that_is_not_a_graph_is_an_artifact_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"not a graph")

    with pytest.raises(ArtifactError, match=r"cannot load broken\.onnx"):
        open_session(path, load_settings(), cpu_only=True)
