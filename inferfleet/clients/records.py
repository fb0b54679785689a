"""A Kafka record to produce.

Plain data with no Kafka client behind it, so code that only builds or reads job
messages (the worker's execution path, `bench/gpu.py`) does not import kafka-python.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Record:
    """A record to produce."""

    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()
