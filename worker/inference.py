"""Running one version's jobs through its loaded model: chunk → tokenize → run → split.

The part of the worker's loop between planning and persisting that touches the model,
kept apart from the loop's clients so that `bench/gpu.py` runs the same code on a
machine without Kafka, Postgres or S3.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from inferfleet.jobs.messages import JobMessage
from inferfleet.models.preprocessing import split_outputs
from worker.batching import Outcome, chunks, run_isolating_failures
from worker.runtime import LoadedModel


def infer(model: LoadedModel, jobs: Sequence[JobMessage]) -> list[dict[str, Any]]:
    """One call of `model` over the jobs' inputs; each job's outputs, JSON-ready."""
    rows = []
    for job in jobs:
        if job.inputs is None:
            raise ValueError(f"job {job.job_id} has no inputs; its input_uri was not read")
        rows.append(job.inputs)
    return split_outputs(model.output_names, model.run(rows), len(rows))


def run_jobs(model: LoadedModel, jobs: Sequence[JobMessage]) -> list[Outcome]:
    """Every job's outcome: calls of at most `model.batch_size` jobs (bucketed by input
    length for text models), a failing call bisected so only its failing jobs fail."""
    length = model.length
    by_length = None if length is None else (lambda job: length(job.inputs or {}))
    outcomes: list[Outcome] = []
    for chunk in chunks(jobs, model.batch_size, by_length):
        outcomes.extend(run_isolating_failures(chunk, lambda b: infer(model, b)))
    return outcomes
