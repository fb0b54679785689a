"""The dispatcher's rules that need no services: the lease, and the per-tenant cap."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine

from inferfleet.errors import ConfigError
from inferfleet.settings import Settings
from scheduler.dispatch import Dispatcher, lease_s


@pytest.mark.parametrize("timeout_s", [0.5, 10.0, 30.0])
def test_a_lease_outlasts_the_whole_deadline_of_the_attempt_it_covers(timeout_s: float) -> None:
    """Attempts start as soon as they are claimed, so one deadline (plus the time to
    render and record) is the longest a claimed attempt can take."""
    assert lease_s(Settings(webhook_timeout_s=timeout_s)) >= timeout_s + 10


@pytest.mark.parametrize(("threads", "cap"), [(16, 16), (16, 32), (2, 2)])
def test_a_tenant_cap_that_could_take_every_thread_stops_the_dispatcher(
    threads: int, cap: int
) -> None:
    settings = Settings(dispatch_threads=threads, webhook_tenant_inflight=cap)
    engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")  # never used

    with pytest.raises(ConfigError, match="INFERFLEET_WEBHOOK_TENANT_INFLIGHT"):
        Dispatcher(engine, settings)
