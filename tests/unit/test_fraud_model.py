"""models/fraud/build.py: the ONNX graph answers as the scikit-learn pipeline does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from inferfleet.models.package import read_package
from inferfleet.models.preprocessing import TensorSpec, split_outputs, stack_columns
from inferfleet.models.validation import validate_instance, validator_for
from tests.builds import fraud_build

COLUMNS = ["transaction_amount", "merchant_category", "user_account_age_days", "hour_of_day"]


fraud = fraud_build()


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fraud")
    fraud.build(out)
    return out


@pytest.fixture(scope="module")
def session(package: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(package / "model.onnx"), providers=["CPUExecutionProvider"])


def feeds_for(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """One [N, 1] array per column: float32 numbers, object strings."""
    return {
        column: frame[column]
        .to_numpy(dtype=object if column == "merchant_category" else np.float32)
        .reshape(-1, 1)
        for column in COLUMNS
    }


def test_onnx_and_scikit_learn_agree_on_2000_rows() -> None:
    pipeline = fraud.train(*fraud.synthetic_transactions(5_000))
    session = ort.InferenceSession(fraud.convert(pipeline), providers=["CPUExecutionProvider"])
    frame, _ = fraud.synthetic_transactions(2_000, seed=7)

    labels, probabilities = session.run(["label", "probabilities"], feeds_for(frame))

    np.testing.assert_allclose(probabilities, pipeline.predict_proba(frame), atol=1e-5)
    np.testing.assert_array_equal(labels, pipeline.predict(frame))
    assert 0 < labels.sum() < len(labels)


def test_the_graph_has_one_dynamic_batch_input_per_column(session: ort.InferenceSession) -> None:
    inputs = {i.name: (i.type, i.shape[1]) for i in session.get_inputs()}

    assert inputs == {
        "transaction_amount": ("tensor(float)", 1),
        "merchant_category": ("tensor(string)", 1),
        "user_account_age_days": ("tensor(float)", 1),
        "hour_of_day": ("tensor(float)", 1),
    }
    assert all(not isinstance(i.shape[0], int) for i in session.get_inputs())


def test_the_outputs_are_a_label_and_a_plain_probability_tensor(
    session: ort.InferenceSession,
) -> None:
    outputs = {o.name: o.type for o in session.get_outputs()}

    assert outputs == {"label": "tensor(int64)", "probabilities": "tensor(float)"}


@pytest.mark.parametrize("rows", [1, 2_000])
def test_the_graph_runs_at_any_batch_size(session: ort.InferenceSession, rows: int) -> None:
    frame, _ = fraud.synthetic_transactions(rows, seed=11)

    labels, probabilities = session.run(["label", "probabilities"], feeds_for(frame))

    assert labels.shape == (rows,)
    assert probabilities.shape == (rows, 2)
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(labels, probabilities.argmax(axis=1))


def test_the_worker_feeds_request_instances_to_the_graph(session: ort.InferenceSession) -> None:
    rows: list[dict[str, Any]] = [
        {
            "transaction_amount": 2500.0,
            "merchant_category": "gift_cards",
            "user_account_age_days": 1,
            "hour_of_day": 3,
        },
        {
            "transaction_amount": 12.5,
            "merchant_category": "grocery",
            "user_account_age_days": 3000,
            "hour_of_day": 14,
        },
    ]
    specs = [TensorSpec(i.name, i.type, len(i.shape)) for i in session.get_inputs()]
    names = [o.name for o in session.get_outputs()]

    results = split_outputs(names, session.run(names, stack_columns(rows, specs)), len(rows))

    assert [r["label"] for r in results] == [1, 0]
    assert results[0]["probabilities"][1] > results[1]["probabilities"][1]
    assert json.loads(json.dumps(results)) == results


def test_the_package_carries_the_request_schema(package: Path) -> None:
    manifest = read_package(package)
    validator = validator_for(manifest.request_schema)
    good = {
        "transaction_amount": 42.0,
        "merchant_category": "travel",
        "user_account_age_days": 100,
        "hour_of_day": 23,
    }

    assert manifest.name == "fraud"
    assert manifest.request_schema == fraud.REQUEST_SCHEMA
    assert manifest.preferred_batch_size == 2048
    assert validate_instance(validator, good) == []
    assert validate_instance(validator, {**good, "hour_of_day": 24}) != []
    assert json.loads((package / "manifest.json").read_text())["training"]["rows"] == 20_000


def test_the_training_data_is_the_same_on_every_run() -> None:
    first, first_labels = fraud.synthetic_transactions(100)
    second, second_labels = fraud.synthetic_transactions(100)

    pd.testing.assert_frame_equal(first, second)
    np.testing.assert_array_equal(first_labels, second_labels)
