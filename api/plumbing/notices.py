"""What this API process does when Postgres announces a change (`inferfleet.clients.notify`).

Keys changed: forget the remembered callers. The registry changed: forget the resolved
versions. Jobs ended: check the waited-on jobs. After every (re)connect of the listener,
all three, since announcements sent while it was away are lost.
"""

from __future__ import annotations

from api.plumbing.deps import Services
from inferfleet.clients.notify import JOBS_ENDED, KEYS, MODELS, Listener
from inferfleet.tenants.keys import KeyLookup


def listener_for(services: Services, keys: KeyLookup) -> Listener:
    """The process's one listener, wired to `services`' caches and waiters."""

    def everything() -> None:
        keys.clear()
        services.versions.clear()
        services.waiters.ended()

    return Listener(
        services.settings.database_url.get_secret_value(),
        {KEYS: keys.clear, MODELS: services.versions.clear, JOBS_ENDED: services.waiters.ended},
        on_connect=everything,
    )
