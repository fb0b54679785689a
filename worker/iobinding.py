"""Running a session through ONNX Runtime's I/O binding.

On a GPU provider, `session.run` copies the feeds to the device and the outputs back
through its own staging; binding says where each tensor lives instead: inputs are bound
from host memory (`bind_cpu_input`, copied to the device once per call), outputs are
left in the provider's device memory and copied back in one step
(`copy_outputs_to_cpu`). Outputs the device cannot hold (strings, sequences, maps) are
bound to host memory. ONNX Runtime's Python API binds no string input, so a graph fed
strings (the demo fraud model's merchant category) runs with `session.run` on every
provider (`binds`).

The same code runs with `device="cpu"` on a CPU session, which is how the tests prove
it gives what `session.run` gives without a GPU.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# Output element types a device can hold; others are bound to host memory.
DEVICE_TYPES = frozenset(
    {
        "tensor(float)",
        "tensor(float16)",
        "tensor(bfloat16)",
        "tensor(double)",
        "tensor(int64)",
        "tensor(int32)",
        "tensor(int8)",
        "tensor(uint8)",
        "tensor(bool)",
    }
)


def binds(on_gpu: bool, input_types: Sequence[str]) -> bool:
    """Whether calls of a session are bound: on a GPU provider, when no input is a string."""
    return on_gpu and all(kind != "tensor(string)" for kind in input_types)


def output_devices(outputs: Sequence[tuple[str, str]], device: str) -> dict[str, str]:
    """Where each output (name, ONNX type) is bound: `device`, or "cpu" for a type
    the device cannot hold."""
    return {name: device if kind in DEVICE_TYPES else "cpu" for name, kind in outputs}


def run_bound(
    session: Any,
    feeds: Mapping[str, Any],
    outputs: Mapping[str, str],
    device_id: int,
) -> list[Any]:
    """One call of `session` with `feeds` bound from host memory and each output bound
    where `outputs` says (`output_devices`); the outputs as numpy arrays, in the order
    of `outputs`."""
    binding = session.io_binding()
    for name, array in feeds.items():
        binding.bind_cpu_input(name, array)
    for name, device in outputs.items():
        binding.bind_output(name, device, 0 if device == "cpu" else device_id)
    session.run_with_iobinding(binding)
    result: list[Any] = binding.copy_outputs_to_cpu()
    return result
