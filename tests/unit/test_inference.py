"""worker.inference: a version's jobs through its model, each failure kept to its job."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from inferfleet.jobs.messages import JobMessage
from inferfleet.models.sessions import SessionConfig
from tests import tinytext
from worker.inference import infer, run_jobs
from worker.runtime import LoadedModel, open_package


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    files = tinytext.build(tmp_path_factory.mktemp("tinytext"))
    return open_package("tinytext", 1, tinytext.manifest(), files, SessionConfig())


def job(i: int, inputs: dict[str, Any] | None) -> JobMessage:
    now = datetime.now(UTC)
    return JobMessage(f"job-{i}", "t", "tinytext", 1, inputs, None, now, None, None)


def test_calls_are_bucketed_by_length_and_each_job_gets_its_own_outputs(
    model: LoadedModel,
) -> None:
    texts = ["the quick brown fox jumps", "a", "the lazy dog", "cat"]
    jobs = [job(i, {"text": t}) for i, t in enumerate(texts)]

    outcomes = run_jobs(replace(model, batch_size=2), jobs)

    by_id = {o.job_id: o.outputs for o in outcomes}
    assert sorted(by_id) == [j.job_id for j in jobs]
    for j, text in zip(jobs, texts, strict=True):
        assert by_id[j.job_id] is not None
        assert by_id[j.job_id]["count"] == len(text.split())
    # Sorted by length, the calls are [a, cat] and [the lazy dog, the quick ...]: each
    # pads to its own longest (in arrival order both calls would pad to 5 and 3).
    padded = {text: len(by_id[j.job_id]["mask"]) for j, text in zip(jobs, texts, strict=True)}
    assert padded == {"a": 1, "cat": 1, "the lazy dog": 5, "the quick brown fox jumps": 5}


def test_a_job_that_cannot_run_fails_alone(model: LoadedModel) -> None:
    jobs = [job(0, {"text": "the dog"}), job(1, {"text": 42}), job(2, None), job(3, {"text": "a"})]

    outcomes = {o.job_id: o for o in run_jobs(model, jobs)}

    assert outcomes["job-0"].outputs is not None
    assert outcomes["job-3"].outputs is not None
    assert outcomes["job-1"].error is not None
    assert "must be a string" in outcomes["job-1"].error["message"]
    assert outcomes["job-2"].error is not None
    assert "has no inputs" in outcomes["job-2"].error["message"]


def test_infer_gives_one_json_ready_result_per_job(model: LoadedModel) -> None:
    results = infer(model, [job(0, {"text": "the quick"}), job(1, {"text": "a cat"})])

    ids = tinytext.VOCAB
    assert results == [
        {"total": float(ids["the"] + ids["quick"]), "mask": [1.0, 1.0], "count": 2},
        {"total": float(ids["a"] + ids["cat"]), "mask": [1.0, 1.0], "count": 2},
    ]
