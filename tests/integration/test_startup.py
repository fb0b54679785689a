"""What the API built before serving is frozen out of the garbage collector's reach
(`api.app`'s lifespan), so that full collections scan only what requests made."""

from __future__ import annotations

import gc

from inferfleet.settings import Settings
from tests.integration.served import served, services


def test_what_the_api_built_at_start_is_left_out_of_later_collections(
    settings: Settings,
) -> None:
    try:
        with served(settings) as (app, _):
            built = services(app)
            scanned = {id(o) for o in gc.get_objects()}
            assert id(built) not in scanned
            assert id(built.keys) not in scanned
    finally:
        gc.unfreeze()
