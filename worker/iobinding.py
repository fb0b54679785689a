"""Running a session through ONNX Runtime's I/O binding.

On a GPU provider, `session.run` copies the feeds to the device and the outputs back
through its own staging; binding says where each tensor lives instead: inputs are bound
from host memory (`bind_cpu_input`, copied to the device once per call), outputs are
left in the provider's device memory and copied back in one step
(`copy_outputs_to_cpu`).

ONNX Runtime's Python API binds no string input, and copying a bound string output back
crashes the process (onnxruntime 1.32), so a graph with a string or other non-numeric
input or output (the demo fraud model is fed its merchant category as a string) runs
with `session.run` on every provider (`binds`).

The same code runs with `device="cpu"` on a CPU session, which is how the tests prove
it gives what `session.run` gives without a GPU.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# Element types a device holds and the binding copies back.
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


def binds(on_gpu: bool, input_types: Sequence[str], output_types: Sequence[str]) -> bool:
    """Whether calls of a session are bound: on a GPU provider, when every input and
    output is a numeric tensor (`DEVICE_TYPES`)."""
    return on_gpu and all(kind in DEVICE_TYPES for kind in (*input_types, *output_types))


def run_bound(
    session: Any,
    feeds: Mapping[str, Any],
    output_names: Sequence[str],
    device: str,
    device_id: int,
) -> list[Any]:
    """One call of `session` with `feeds` bound from host memory and the outputs bound
    to `device` ("cuda", or "cpu"); the outputs as numpy arrays, in the order named."""
    binding = session.io_binding()
    for name, array in feeds.items():
        binding.bind_cpu_input(name, array)
    for name in output_names:
        binding.bind_output(name, device, device_id)
    session.run_with_iobinding(binding)
    result: list[Any] = binding.copy_outputs_to_cpu()
    return result
