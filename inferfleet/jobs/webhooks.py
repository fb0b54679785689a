"""Webhook signing (Standard Webhooks) and the safety check of webhook URLs.

Signatures are made by the `standardwebhooks` library: `v1,` + base64 HMAC-SHA256 over
`{id}.{timestamp}.{body}`, keyed by the base64-decoded part of the tenant's `whsec_`
secret. During a secret rotation every delivery carries both signatures.

A webhook URL must be http(s), and its host must not be, or resolve to, an address that
is not globally routable (`inferfleet.jobs.webhooktargets` holds the rule), unless the
allowlist names the host or a block holding the address. A name that does not resolve
is accepted at submit; the dispatcher resolves and checks it again at every attempt.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

from inferfleet.errors import FieldError
from inferfleet.jobs.webhooktargets import (
    Refusal,
    Resolver,
    bounded_resolver,
    check_url,
    host_to_resolve,
    resolve_within,
)
from inferfleet.settings import Settings


def signed_headers(
    secrets: Sequence[str], msg_id: str, timestamp: int, body: str
) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt, signed with every given secret."""
    at = datetime.fromtimestamp(timestamp, UTC)
    signatures = " ".join(Webhook(secret).sign(msg_id, at, body) for secret in secrets)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signatures,
        "content-type": "application/json",
    }


def dns(settings: Settings) -> Resolver:
    """The system resolver, waiting at most `INFERFLEET_WEBHOOK_DNS_TIMEOUT_S`."""
    return bounded_resolver(settings.webhook_dns_timeout_s)


def url_problem(url: str, allowlist: Sequence[str], resolver: Resolver | None = None) -> str | None:
    """Why `url` may not receive webhooks, or None if it may (checked at submit).

    A name that does not resolve (or not within the resolver's wait) is accepted here:
    the dispatcher resolves it again at each attempt and posts only to addresses it
    checked then. Without `resolver`, the system's with the setting's default wait.
    """
    default_wait = Settings.model_fields["webhook_dns_timeout_s"].default
    found = check_url(url, allowlist, resolver or bounded_resolver(default_wait))
    if isinstance(found, Refusal) and not found.unresolved:
        return found.reason
    return None


def refused_url(url: str, settings: Settings) -> FieldError | None:
    """The error of a webhook URL a client names (`webhook.url`, `url_refused`) when the
    safety check refuses it, with the configured allowlist and bounded DNS; else None."""
    return _refusal(url, url_problem(url, settings.webhook_allowlist, dns(settings)))


async def refused_webhook(url: str, settings: Settings) -> FieldError | None:
    """`refused_url` for the event loop: the host's look-up runs on the resolver's own
    threads and is awaited at most `INFERFLEET_WEBHOOK_DNS_TIMEOUT_S`; a name with no
    answer by then is accepted, as `refused_url` accepts it."""
    host = host_to_resolve(url)
    found = [] if host is None else await resolve_within(host, settings.webhook_dns_timeout_s)
    return _refusal(url, url_problem(url, settings.webhook_allowlist, lambda _: found))


def _refusal(url: str, problem: str | None) -> FieldError | None:
    return None if problem is None else FieldError(("webhook", "url"), problem, "url_refused", url)
