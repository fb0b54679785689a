"""Webhook signatures, checked with the standardwebhooks verifier, and URL safety."""

from __future__ import annotations

import base64
import json
import time

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from inferfleet.webhooks import signed_headers, url_problem

SECRET = "whsec_" + base64.b64encode(b"s" * 24).decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"o" * 24).decode()
BODY = json.dumps({"type": "job.succeeded", "data": {"id": "job_1"}})


def test_a_signed_delivery_verifies_with_the_tenants_secret() -> None:
    headers = signed_headers([SECRET], "msg_1", int(time.time()), BODY)

    assert Webhook(SECRET).verify(BODY, headers) == json.loads(BODY)
    assert headers["webhook-signature"].startswith("v1,")
    with pytest.raises(WebhookVerificationError):
        Webhook(OLD_SECRET).verify(BODY, headers)


def test_during_a_rotation_both_secrets_verify() -> None:
    headers = signed_headers([SECRET, OLD_SECRET], "msg_2", int(time.time()), BODY)

    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (SECRET, OLD_SECRET):
        Webhook(secret).verify(BODY, headers)


def test_a_changed_body_or_id_fails_verification() -> None:
    headers = signed_headers([SECRET], "msg_3", int(time.time()), BODY)

    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(BODY.replace("job_1", "job_2"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(BODY, {**headers, "webhook-id": "msg_4"})


def resolver(table: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    return lambda host: table.get(host, [])


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        ("https://hooks.example.com/x", None),
        ("http://203.0.113.9/x", "private"),  # TEST-NET-3: not globally reachable
        ("https://8.8.8.8/x", None),
        ("ftp://hooks.example.com/x", "http or https"),
        ("http://127.0.0.1:8080/x", "loopback"),
        ("http://[::1]/x", "loopback"),
        ("http://10.1.2.3/x", "private"),
        ("http://192.168.0.1/x", "private"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://0.0.0.0/x", "unspecified"),
        ("http://internal.corp/x", "private"),  # resolves to 10.0.0.5
        ("http://localhost/x", "loopback"),
        ("http://unresolvable.example/x", None),  # checked again at delivery
    ],
)
def test_webhook_urls_into_internal_ranges_are_refused(url: str, refused: str | None) -> None:
    names = {
        "hooks.example.com": ["93.184.215.14"],
        "internal.corp": ["10.0.0.5"],
        "localhost": ["127.0.0.1", "::1"],
    }
    problem = url_problem(url, [], resolver(names))

    if refused is None:
        assert problem is None
    else:
        assert problem is not None
        assert refused in problem


@pytest.mark.parametrize("entry", ["127.0.0.1", "127.0.0.0/8", "localhost"])
def test_the_allowlist_admits_a_host_or_a_block(entry: str) -> None:
    names = {"localhost": ["127.0.0.1"]}
    url = "http://localhost:9000/hook" if entry == "localhost" else "http://127.0.0.1:9000/h"

    assert url_problem(url, [entry], resolver(names)) is None
    assert url_problem("http://10.0.0.1/h", [entry], resolver(names)) is not None
