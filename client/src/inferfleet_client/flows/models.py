"""Flows of `/v1/models` (admin keys): the registry, read."""

from __future__ import annotations

from inferfleet_client.flows.steps import Flow, Request, call
from inferfleet_client.models import Model, ModelList
from inferfleet_client.retries import RetryPolicy


def listing(policy: RetryPolicy) -> Flow[ModelList]:
    """Every model, its aliases and its latest version."""
    return (
        yield from call(Request("GET", "/v1/models", resend_unanswered=True), policy, ModelList)
    )


def get(name: str, policy: RetryPolicy) -> Flow[Model]:
    """A model's versions (schemas included) and where its aliases point."""
    return (
        yield from call(Request("GET", f"/v1/models/{name}", resend_unanswered=True), policy, Model)
    )
