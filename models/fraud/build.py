"""Build the demo fraud model package from synthetic data.

    python models/fraud/build.py OUT_DIR

writes OUT_DIR/model.onnx and OUT_DIR/manifest.json. The model is a scikit-learn
pipeline (one-hot encoding of the merchant category, scaling of the numbers, logistic
regression) converted whole with skl2onnx, so preprocessing lives in the graph: the
worker feeds raw request fields. The data and so the model are the same on every run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

CATEGORIES = [
    "electronics",
    "fashion",
    "gaming",
    "gift_cards",
    "grocery",
    "restaurants",
    "travel",
    "utilities",
]
RISKY = {"electronics": 1.0, "gift_cards": 1.6, "gaming": 0.8, "travel": 0.5}
NUMERIC = ["transaction_amount", "user_account_age_days", "hour_of_day"]
SEED = 20261125

REQUEST_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "fraud request",
    "type": "object",
    "additionalProperties": False,
    "required": ["transaction_amount", "merchant_category", "user_account_age_days", "hour_of_day"],
    "properties": {
        "transaction_amount": {"type": "number", "minimum": 0, "maximum": 1_000_000},
        "merchant_category": {"type": "string", "enum": CATEGORIES},
        "user_account_age_days": {"type": "integer", "minimum": 0, "maximum": 36_500},
        "hour_of_day": {"type": "integer", "minimum": 0, "maximum": 23},
    },
}
OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "label": {"type": "integer", "description": "1 = likely fraud"},
        "probabilities": {
            "type": "array",
            "items": {"type": "number"},
            "minItems": 2,
            "maxItems": 2,
            "description": "[P(legitimate), P(fraud)]",
        },
    },
}


def synthetic_transactions(n: int, seed: int = SEED) -> tuple[pd.DataFrame, np.ndarray]:
    """`n` transactions and their fraud labels, drawn from a fixed generative story."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "transaction_amount": rng.lognormal(mean=4.0, sigma=1.2, size=n).round(2),
            "merchant_category": rng.choice(CATEGORIES, size=n),
            "user_account_age_days": rng.integers(0, 3650, size=n),
            "hour_of_day": rng.integers(0, 24, size=n),
        }
    )
    night = ((frame.hour_of_day < 6) | (frame.hour_of_day > 22)).astype(float)
    score = (
        -4.0
        + 0.9 * np.log1p(frame.transaction_amount) / 2
        + frame.merchant_category.map(RISKY).fillna(0.0)
        - 0.0015 * frame.user_account_age_days
        + 1.2 * night
    )
    labels = rng.random(n) < 1 / (1 + np.exp(-score))
    return frame, labels.astype(np.int64)


def train(frame: pd.DataFrame, labels: np.ndarray) -> Pipeline:
    """The fitted scikit-learn pipeline."""
    preprocess = ColumnTransformer(
        [
            (
                "category",
                OneHotEncoder(categories=[CATEGORIES], handle_unknown="ignore"),
                ["merchant_category"],
            ),
            ("numbers", StandardScaler(), NUMERIC),
        ]
    )
    pipeline = Pipeline(
        [("preprocess", preprocess), ("classify", LogisticRegression(max_iter=1000))]
    )
    pipeline.fit(frame, labels)
    return pipeline


def convert(pipeline: Pipeline) -> bytes:
    """The pipeline as ONNX: one `[batch, 1]` input per column, no ZipMap."""
    initial_types = [
        ("transaction_amount", FloatTensorType([None, 1])),
        ("merchant_category", StringTensorType([None, 1])),
        ("user_account_age_days", FloatTensorType([None, 1])),
        ("hour_of_day", FloatTensorType([None, 1])),
    ]
    onx = to_onnx(
        pipeline,
        initial_types=initial_types,
        options={id(pipeline.named_steps["classify"]): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    # skl2onnx collects opset imports in a set; sort them so the same model always has
    # the same bytes (and so the same sha256 in the registry).
    imports = sorted(onx.opset_import, key=lambda o: o.domain)
    del onx.opset_import[:]
    onx.opset_import.extend(imports)
    serialized: bytes = onx.SerializeToString()
    return serialized


def build(out: Path, rows: int = 20_000) -> None:
    """Train on synthetic data and write the package to `out`."""
    frame, labels = synthetic_transactions(rows)
    pipeline = train(frame, labels)
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.onnx").write_bytes(convert(pipeline))
    manifest = {
        "name": "fraud",
        "format": 1,
        "description": "Demo fraud classifier: logistic regression on synthetic transactions.",
        "model_file": "model.onnx",
        "preprocessing": {"kind": "none"},
        "request_schema": REQUEST_SCHEMA,
        "example": {
            "transaction_amount": 245.5,
            "merchant_category": "electronics",
            "user_account_age_days": 847,
            "hour_of_day": 14,
        },
        "output_schema": OUTPUT_SCHEMA,
        "batching": {"preferred_batch_size": 2048},
        "training": {"rows": rows, "seed": SEED, "positives": int(labels.sum())},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write the package into")
    build(parser.parse_args().out)


if __name__ == "__main__":
    main()
