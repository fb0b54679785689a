"""bench/gpu.py runs on a GPU machine that has only the execution path's libraries.

That machine has Python with numpy, onnx, onnxruntime, tokenizers, safetensors,
prometheus-client and torch, and none of the services' libraries (fastapi, pydantic,
SQLAlchemy, boto3, kafka-python, OpenTelemetry, jsonschema, ...). A fresh interpreter
imports the bench (and so the worker's execution path: decode, plan, tokenize, run,
split) with an import hook that refuses every third-party module but those.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ON_THE_DEVICE = {
    "numpy",
    "onnx",
    "onnxruntime",
    "tokenizers",
    "safetensors",
    "prometheus_client",
    "torch",
    "pynvml",
}
PROJECT = {"bench", "worker", "inferfleet"}

GUARDED_IMPORT = """
import importlib.abc
import sys

allowed = set(sys.argv[1].split(","))
# The device's libraries import their own dependencies: let them, before the hook.
for name in ("numpy", "onnxruntime", "tokenizers", "prometheus_client"):
    __import__(name)
refused = []


class OnlyTheDevicesLibraries(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        top = fullname.partition(".")[0]
        if top in sys.stdlib_module_names or top in allowed:
            return None
        refused.append(fullname)
        raise ImportError(f"{fullname} is not installed on the GPU machine")


sys.meta_path.insert(0, OnlyTheDevicesLibraries())
for module in sys.argv[2:]:
    __import__(module)
print("imported", *sys.argv[2:])
"""


def guarded_import(*modules: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    allowed = ",".join(sorted(ON_THE_DEVICE | PROJECT))
    return subprocess.run(
        [sys.executable, "-c", GUARDED_IMPORT, allowed, *modules],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )


def test_the_bench_and_the_execution_path_import_with_only_the_devices_libraries() -> None:
    result = guarded_import("bench.gpu", "worker.inference", "worker.runtime", "worker.health")

    assert result.returncode == 0, result.stderr
    assert "imported bench.gpu" in result.stdout


def test_the_hook_refuses_a_library_the_device_lacks() -> None:
    # The check itself can fail: the worker's loop needs Kafka and Postgres clients.
    result = guarded_import("worker.main")

    assert result.returncode != 0
    assert "is not installed on the GPU machine" in result.stderr
