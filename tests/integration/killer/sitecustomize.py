"""Test-only: a worker process that runs a row whose `transaction_amount` is
`KILLER_AMOUNT` dies on the spot, as a segmentation fault in ONNX Runtime would.

Python imports `sitecustomize` at start-up from its path, so only a process started
with this folder on `PYTHONPATH` (tests/integration/test_poison.py) loads it; nothing
in the project imports it, and no image or package ships it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

KILLER_AMOUNT = 13013.13
# The exit status of a process killed by SIGSEGV, as a shell reports it.
EXIT_STATUS = 139


def _install() -> None:
    import worker.inference

    real = worker.inference.infer

    def infer(model: Any, jobs: Sequence[Any]) -> list[dict[str, Any]]:
        if any((job.inputs or {}).get("transaction_amount") == KILLER_AMOUNT for job in jobs):
            os._exit(EXIT_STATUS)
        return real(model, jobs)

    worker.inference.infer = infer


_install()
