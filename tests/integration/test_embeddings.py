"""The MiniLM embedding model served by a worker, checked against sentence-transformers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import Engine

from inferfleet.models.publish import publish
from inferfleet.settings import Settings
from tests.builds import minilm_build
from tests.integration.conftest import eventually, job_rows


@pytest.fixture(scope="session")
def minilm_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedding package, built once per session by the project's own script."""
    out = tmp_path_factory.mktemp("minilm-package")
    minilm_build().build(out)
    return out


def test_worker_embeddings_match_the_reference_within_cosine_0_999(
    settings: Settings,
    engine: Engine,
    s3: Any,
    kafka: str,
    minilm_package: Path,
    client: httpx.Client,
    start_worker,
) -> None:
    reference = json.loads((minilm_package / "reference.json").read_text())
    version = publish(settings, engine, s3, minilm_package, name=f"minilm-{id(reference):x}")
    worker = start_worker(version.name, INFERFLEET_INTRA_OP_THREADS="2")
    worker.wait_ready(timeout=120)
    assert version.files.keys() == {"model.onnx", "tokenizer.json"}

    sentences = reference["sentences"]
    # Submitted in one bulk request, so the worker embeds sentences of different lengths
    # in the same batch: padding to each call's longest sequence must not change them.
    r = client.post(
        "/v1/jobs/bulk",
        json={"model": version.name, "items": [{"inputs": {"text": s}} for s in sentences]},
    )
    assert r.status_code == 202, r.text
    ids = r.json()["ids"]
    eventually(
        lambda: {row.status for row in job_rows(engine, version.name)} == {"succeeded"},
        "every sentence to be embedded",
        timeout=120,
    )
    rows = {row.id: row for row in job_rows(engine, version.name)}
    for job_id, expected in zip(ids, reference["embeddings"], strict=True):
        got = np.array(rows[job_id].outputs["embedding"], dtype=np.float64)
        want = np.array(expected, dtype=np.float64)
        assert got.shape == (384,)
        cosine = got @ want / (np.linalg.norm(got) * np.linalg.norm(want))
        assert cosine > 0.999, f"cosine {cosine} for job {job_id}"

    bad = client.post("/v1/jobs", json={"model": version.name, "inputs": {"text": ""}})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["loc"] == ["inputs", "text"]
