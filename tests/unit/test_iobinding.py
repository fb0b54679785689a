"""worker.iobinding: the code that runs on a GPU, run here on CPU (device "cpu").

ONNX Runtime's I/O binding works with the CPU provider too, so the bound path that a
GPU worker takes is proven against `session.run` without a GPU.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnxruntime as ort
import pytest

from inferfleet.models.sessions import SessionConfig
from tests import tinytext
from tests.builds import fraud_build
from worker.iobinding import binds, run_bound
from worker.runtime import LoadedModel, open_package

TEXTS = [
    {"text": "the quick brown fox jumps over the lazy dog"},
    {"text": "a cat"},
    {"text": "unknown words here"},
    {"text": "the dog"},
]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    files = tinytext.build(tmp_path_factory.mktemp("tinytext"))
    return open_package("tinytext", 1, tinytext.manifest(), files, SessionConfig())


NUMERIC = ["tensor(int64)", "tensor(float)"]


@pytest.mark.parametrize(
    ("on_gpu", "inputs", "outputs", "bound"),
    [
        (True, NUMERIC, NUMERIC, True),
        (True, ["tensor(float)", "tensor(string)"], NUMERIC, False),  # no string input binds
        (True, NUMERIC, ["tensor(string)"], False),  # nor is a string output copied back
        (True, NUMERIC, ["seq(map(int64,tensor(float)))"], False),
        (False, NUMERIC, NUMERIC, False),
    ],
)
def test_calls_are_bound_on_a_gpu_when_every_tensor_is_numeric(
    on_gpu: bool, inputs: list[str], outputs: list[str], bound: bool
) -> None:
    assert binds(on_gpu, inputs, outputs) is bound


def test_a_bound_call_gives_what_session_run_gives(model: LoadedModel) -> None:
    feeds = model.preprocess(TEXTS)

    bound = run_bound(model.session, feeds, model.output_names, "cpu", device_id=0)
    plain = model.session.run(model.output_names, feeds)

    assert len(bound) == len(plain) == 3
    for got, want in zip(bound, plain, strict=True):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    assert bound[2].tolist() == [9, 2, 3, 2]  # tokens kept per row: the call really ran


def test_a_loaded_model_with_bound_outputs_runs_through_the_binding(model: LoadedModel) -> None:
    # A CPU session is never bound by itself; bound here as a GPU session is, to "cpu".
    assert model.bound_device is None
    bound = replace(model, bound_device="cpu")
    calls: list[object] = []
    session = model.session

    class Watched:
        """The real session, noting which way each call went."""

        def io_binding(self) -> object:
            calls.append("bound")
            return session.io_binding()

        def __getattr__(self, name: str) -> object:
            return getattr(session, name)

    bound.session = Watched()

    for got, want in zip(bound.run(TEXTS), model.run(TEXTS), strict=True):
        np.testing.assert_array_equal(got, want)
    assert calls == ["bound"]


def test_the_demo_model_is_fed_strings_so_it_runs_unbound_on_a_gpu(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    out = tmp_path_factory.mktemp("fraud")
    fraud_build().build(out)
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    inputs = [i.type for i in session.get_inputs()]
    outputs = [o.type for o in session.get_outputs()]

    assert "tensor(string)" in inputs
    assert not binds(True, inputs, outputs)
