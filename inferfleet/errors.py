"""The project's error hierarchy.

    InferfleetError
    ├── ConfigError            settings are missing or malformed
    ├── NotFoundError          a model, version, alias or job does not exist
    ├── InvalidInputError      a request breaks its schema (carries field errors)
    ├── QueueUnavailableError  Kafka did not take a message in time      (retriable)
    ├── ArtifactError          a model artifact is missing or corrupt
    └── InferenceError         ONNX Runtime refused a batch

Behaviour is data: `retriable` says whether trying the same thing again later may work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class InferfleetError(Exception):
    """Raised for every failure the project itself detects."""

    retriable: bool = False


class ConfigError(InferfleetError):
    """Raised when settings are missing or malformed, at startup."""


class NotFoundError(InferfleetError):
    """Raised when a model, version, alias or job does not exist."""


@dataclass(frozen=True)
class FieldError:
    """One offending field: where it is, what is wrong, and the value that was sent."""

    loc: tuple[str | int, ...]
    msg: str
    type: str
    input: Any = field(default=None)


class InvalidInputError(InferfleetError):
    """Raised when a request breaks its schema; `errors` lists every offending field."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in errors))


class QueueUnavailableError(InferfleetError):
    """Raised when Kafka does not acknowledge a message in time; the job was not queued."""

    retriable = True


class ArtifactError(InferfleetError):
    """Raised when a model artifact is missing, truncated or fails its sha256 check."""


class InferenceError(InferfleetError):
    """Raised when ONNX Runtime refuses a batch."""
