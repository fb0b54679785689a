"""Flows of the client's core, driven without a network: bulk submits cut to the server's
limit, batches named for upload, waits that give up at their deadline."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from inferfleet_client.errors import WaitTimeoutError
from inferfleet_client.flows import batches, jobs
from inferfleet_client.flows.steps import Emit, Request
from inferfleet_client.models import BulkItem
from inferfleet_client.retries import RetryPolicy

POLICY = RetryPolicy(max_retries=0)


def test_a_bulk_submit_is_cut_into_chunks_each_with_a_key_of_its_own() -> None:
    items = [BulkItem(inputs={"n": n}) for n in range(25)]
    flow = jobs.create_many("fraud", "3", items, None, 60, POLICY, chunk=10)
    sent: list[Request] = []
    progress = []
    value: Any = None
    while True:
        try:
            step = flow.send(value)
        except StopIteration as done:
            ids = done.value
            break
        value = None
        if isinstance(step, Request):
            sent.append(step)
            count = len(step.json["items"])
            start = sum(len(s.json["items"]) for s in sent[:-1])
            value = httpx.Response(202, json={"ids": [f"j{start + i}" for i in range(count)]})
        elif isinstance(step, Emit):
            progress.append((step.value.done, step.value.total))

    assert [len(s.json["items"]) for s in sent] == [10, 10, 5]
    assert sent[2].json["items"][0] == {"inputs": {"n": 20}, "metadata": {}}
    assert {s.json["version"] for s in sent} == {"3"}
    assert {s.json["ttl_seconds"] for s in sent} == {60}
    assert len({s.headers["Idempotency-Key"] for s in sent}) == 3
    assert ids == [f"j{n}" for n in range(25)]
    assert progress == [(10, 25), (20, 25), (25, 25)]


@pytest.mark.parametrize(
    ("name", "upload"),
    [("in.jsonl", "in.jsonl"), ("my file (2).csv", "my_file__2_.csv"), (".hidden.jsonl",
     "hidden.jsonl")],
)  # fmt: skip
def test_upload_names_follow_the_route_s_rule(name: str, upload: str) -> None:
    assert batches.upload_name(Path("/somewhere") / name) == upload


def test_results_go_beside_an_upload_or_beside_the_named_file() -> None:
    uploaded = "s3://b/tenants/t/uploads/01j/in.jsonl"
    assert (
        batches.default_output(uploaded, uploaded=True) == "s3://b/tenants/t/uploads/01j/results/"
    )
    assert batches.default_output("s3://b/t/day.csv", uploaded=False) == "s3://b/t/day-results/"


def test_a_wait_past_its_deadline_raises_with_the_job_as_last_seen() -> None:
    job = {"id": "job_1", "status": "running", "model": "m", "version": "1", "outputs": None,
           "output_uri": None, "output_url": None, "error": None, "attempts": 1,
           "metadata": {}, "batch_id": None, "created_at": "2026-12-04T12:00:00Z",
           "started_at": None, "completed_at": None}  # fmt: skip
    flow = jobs.wait("job_1", POLICY, deadline=time.monotonic() - 1)
    step = next(flow)
    assert isinstance(step, Request)
    assert step.params is None  # no time left: no long-poll

    with pytest.raises(WaitTimeoutError) as raised:
        flow.send(httpx.Response(200, json=job))
    assert raised.value.last.status == "running"
