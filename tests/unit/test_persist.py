"""How outcomes become the JSON the results statement writes (no database)."""

from __future__ import annotations

import json

import pytest

from worker.batching import Outcome
from worker.persist import _encode


def test_outputs_are_written_as_json() -> None:
    outputs, error = _encode(Outcome("job_1", outputs={"label": 1, "probabilities": [0.25, 0.75]}))

    assert json.loads(outputs or "") == {"label": 1, "probabilities": [0.25, 0.75]}
    assert error is None


def test_an_error_is_written_without_outputs() -> None:
    outputs, error = _encode(Outcome("job_1", error={"type": "inference_error", "message": "x"}))

    assert outputs is None
    assert json.loads(error or "") == {"type": "inference_error", "message": "x"}


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_outputs_json_cannot_hold_fail_the_job_instead_of_the_batch(bad: float) -> None:
    outputs, error = _encode(Outcome("job_1", outputs={"score": [0.5, bad]}))

    assert outputs is None
    assert json.loads(error or "")["type"] == "invalid_output"
