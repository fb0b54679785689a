"""Where the client connects and how it retries: arguments first, then the environment
(`INFERFLEET_URL`, `INFERFLEET_API_KEY`), then defaults. Shared by both clients, with the
translation of a flow's `Request` into httpx's arguments."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from inferfleet_client.flows.steps import Request
from inferfleet_client.retries import RetryPolicy

DEFAULT_URL = "http://127.0.0.1:8000"
USER_AGENT = "inferfleet-client/0.1.0"


@dataclass(frozen=True)
class ClientConfig:
    """A client's connection settings. `api_key` never appears in the repr."""

    base_url: str = DEFAULT_URL
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 30.0
    retries: RetryPolicy = field(default_factory=RetryPolicy)


def resolve(
    base_url: str | None,
    api_key: str | None,
    timeout_s: float,
    retries: RetryPolicy | None,
    env: Mapping[str, str] = os.environ,
) -> ClientConfig:
    """The config from arguments, falling back on `INFERFLEET_URL` and
    `INFERFLEET_API_KEY`."""
    url = base_url or env.get("INFERFLEET_URL") or DEFAULT_URL
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"the API URL must start with http:// or https://, not {url!r}")
    return ClientConfig(
        base_url=url.rstrip("/"),
        api_key=api_key or env.get("INFERFLEET_API_KEY") or None,
        timeout_s=timeout_s,
        retries=retries or RetryPolicy(),
    )


def httpx_arguments(request: Request, config: ClientConfig) -> dict[str, Any]:
    """The arguments of `build_request` for `request` (the same on httpx.Client and
    httpx.AsyncClient), its body aside. The API key goes only to the API, never to a
    presigned URL."""
    headers = {"User-Agent": USER_AGENT, **request.headers}
    if not request.external and config.api_key:
        headers["Authorization"] = f"Bearer {config.api_key}"
    return {
        "method": request.method,
        "url": request.url if request.external else config.base_url + request.url,
        "params": dict(request.params) if request.params else None,
        "json": request.json,
        "headers": headers,
        "timeout": request.timeout or config.timeout_s,
    }


CHUNK_BYTES = 1024 * 1024
