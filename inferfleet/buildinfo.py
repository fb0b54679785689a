"""`inferfleet_build_info`: which build a process runs, as every service reports it.

A gauge of 1 labelled with the package version and the Python version, the Prometheus
convention for build facts: `inferfleet_build_info * on (instance) group_left (version)`
puts the version beside any other series, and `count by (version)` shows a rollout.
"""

from __future__ import annotations

import platform

from prometheus_client import CollectorRegistry, Gauge

from inferfleet import __version__

BUILD_INFO = "inferfleet_build_info"


def register_build_info(registry: CollectorRegistry) -> Gauge:
    """Add `inferfleet_build_info{version, python}` = 1 to `registry`.

    With several processes in prometheus-client's multiprocess mode every process
    writes the same 1; the exposition keeps the largest of the live ones.
    """
    gauge = Gauge(
        BUILD_INFO,
        "1, labelled with the inferfleet version and the Python version this process runs.",
        ["version", "python"],
        registry=registry,
        multiprocess_mode="livemax",
    )
    gauge.labels(__version__, platform.python_version()).set(1)
    return gauge
