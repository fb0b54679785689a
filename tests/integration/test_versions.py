"""api.plumbing.versions in a running API: answers remembered, and an alias moved by
another process seen through Postgres's notification."""

from __future__ import annotations

from sqlalchemy import Engine

from api.plumbing.versions import resolve_version
from inferfleet.models import registry
from inferfleet.settings import Settings
from tests.integration.conftest import eventually
from tests.integration.served import Statements, on_loop, served, services


def test_an_alias_moved_by_another_process_is_seen_by_a_running_api(
    settings: Settings, engine: Engine, publish_model
) -> None:
    first = publish_model()
    second = publish_model(alias=None, name=first.name)
    # Entries would live an hour: only the notification can end this alias's entry.
    with served(settings, cache_max_age_s=3600) as (app, _):
        found = services(app)
        statements = Statements(app)

        def production() -> int:
            return on_loop(app, resolve_version(found, first.name, "production")).version

        before = [production() for _ in range(3)]
        asked = len(statements.reading("model_aliases"))
        with engine.begin() as conn:
            registry.set_alias(conn, first.name, "production", second.version)
        eventually(lambda: production() == second.version, "the alias move to be seen", 30)

    assert before == [first.version] * 3
    assert asked == 1
