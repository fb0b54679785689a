"""The GPU's busy share during a measurement: NVML's utilization, sampled in a thread.

NVML's `utilization.gpu` is the share of its last sample period (1/6 s to 1 s, by
device) during which one or more kernels ran. It is read through pynvml where that is
installed, else from `nvidia-smi --query-gpu`; with neither (a CPU machine), the share
is None. Short measurements read few samples: run each for a few seconds.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading
from collections.abc import Callable
from typing import Any

INTERVAL_S = 0.05
SMI = ["nvidia-smi", "--format=csv,noheader,nounits"]


def _nvml(device_id: int) -> tuple[Callable[[], float], Any] | None:
    """A reader of the device's utilization (0 to 1) through pynvml, and the handle; None
    without pynvml or a driver."""
    try:
        import pynvml  # type: ignore[import-not-found, unused-ignore]

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(device_id)
    except Exception:  # noqa: BLE001 - not installed, no driver: fall back
        return None
    return (lambda: pynvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100), handle


def _smi(device_id: int) -> Callable[[], float] | None:
    """A reader of the device's utilization (0 to 1) through nvidia-smi; None without it."""
    if shutil.which("nvidia-smi") is None:
        return None
    query = [*SMI, "--query-gpu=utilization.gpu", f"--id={device_id}"]

    def read() -> float:
        out = subprocess.run(query, capture_output=True, text=True, timeout=5, check=True)
        return float(out.stdout.strip()) / 100

    try:
        read()
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return read


def device_name(device_id: int) -> str:
    """The GPU's name and driver per nvidia-smi, or "no GPU found"."""
    if shutil.which("nvidia-smi") is None:
        return "no GPU found"
    query = [*SMI, "--query-gpu=name,driver_version,memory.total", f"--id={device_id}"]
    try:
        out = subprocess.run(query, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return "no GPU found"
    return out.stdout.strip()


class GpuBusy:
    """Samples the utilization of one GPU between `start()` and `stop()`."""

    def __init__(self, device_id: int | None) -> None:
        self.source: str | None = None
        self._read: Callable[[], float] | None = None
        if device_id is not None:
            nvml = _nvml(device_id)
            if nvml is not None:
                self._read, self.source = nvml[0], "NVML (pynvml)"
            else:
                self._read = _smi(device_id)
                self.source = "nvidia-smi" if self._read is not None else None
        self._samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._read is None:
            return
        self._samples = []
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, name="gpu-busy", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        assert self._read is not None
        while not self._stop.is_set():
            with contextlib.suppress(Exception):  # a failed read is a missing sample
                self._samples.append(self._read())
            self._stop.wait(INTERVAL_S)

    def stop(self) -> float | None:
        """The mean utilization since `start()` (0 to 1), or None without a reader or samples."""
        if self._thread is None:
            return None
        self._stop.set()
        self._thread.join()
        self._thread = None
        return sum(self._samples) / len(self._samples) if self._samples else None
