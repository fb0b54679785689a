"""Webhook signatures, checked with the standardwebhooks verifier, and URL safety."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import threading
import time

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from inferfleet.errors import FieldError
from inferfleet.jobs import webhooktargets
from inferfleet.jobs.webhooks import refused_webhook, signed_headers, url_problem
from inferfleet.jobs.webhooktargets import (
    Refusal,
    Target,
    bounded_resolver,
    check_url,
    refused_kind,
)
from inferfleet.settings import load_settings

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


# Every range the rule refuses beyond `is_global`'s base, and the forms that carry one.
REFUSED_ADDRESSES = [
    ("100.64.0.1", "carrier-grade NAT"),
    ("100.100.100.200", "carrier-grade NAT"),  # Alibaba's metadata service
    ("100.127.255.254", "carrier-grade NAT"),
    ("192.0.0.9", "IETF protocol assignment"),  # is_global admits it
    ("192.0.0.170", "IETF protocol assignment"),
    ("198.18.0.1", "benchmarking"),
    ("198.19.255.255", "benchmarking"),
    ("fec0::1", "site-local"),  # is_global admits it
    ("64:ff9b:1::a00:1", "local-use NAT64"),
    ("64:ff9b:1::808:808", "local-use NAT64"),
    ("::ffff:127.0.0.1", "loopback (as 127.0.0.1)"),
    ("::ffff:10.0.0.1", "private (as 10.0.0.1)"),
    ("::ffff:100.100.100.200", "carrier-grade NAT (as 100.100.100.200)"),
    ("::ffff:169.254.169.254", "link-local (as 169.254.169.254)"),
    ("64:ff9b::a00:1", "private (as 10.0.0.1)"),
    ("64:ff9b::6464:64c8", "carrier-grade NAT (as 100.100.100.200)"),
    ("64:ff9b::a9fe:a9fe", "link-local (as 169.254.169.254)"),
    ("2002:a00:1::", "private (as 10.0.0.1)"),  # 6to4 of 10.0.0.1
    ("2002:7f00:1::1", "loopback (as 127.0.0.1)"),
    ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "private"),  # Teredo
    ("::127.0.0.1", "reserved"),  # IPv4-compatible, deprecated
    ("127.0.0.1", "loopback"),
    ("::1", "loopback"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("169.254.169.254", "link-local"),
    ("fe80::1", "link-local"),
    ("224.0.0.1", "multicast"),
    ("ff02::1", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("192.168.1.1", "private"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("203.0.113.9", "private"),
    ("2001:db8::1", "private"),
]
ADMITTED_ADDRESSES = [
    "8.8.8.8",
    "93.184.215.14",
    "2606:4700::1111",
    "::ffff:8.8.8.8",  # mapped form of a global address
    "64:ff9b::808:808",  # DNS64 of a global address: v6-only clusters need it
    "2002:808:808::1",  # 6to4 of a global address
]


@pytest.mark.parametrize(("address", "kind"), REFUSED_ADDRESSES)
def test_addresses_that_are_not_globally_routable_are_refused(address: str, kind: str) -> None:
    assert refused_kind(ipaddress.ip_address(address)) == kind


@pytest.mark.parametrize("address", ADMITTED_ADDRESSES)
def test_globally_routable_addresses_are_admitted(address: str) -> None:
    assert refused_kind(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(("address", "kind"), REFUSED_ADDRESSES)
def test_a_name_answering_any_refused_address_is_refused(address: str, kind: str) -> None:
    names = {"hooks.example.com": ["93.184.215.14", address]}
    problem = url_problem("https://hooks.example.com/x", [], resolver(names))

    assert problem is not None
    assert kind in problem


def test_check_url_pins_the_addresses_it_checked() -> None:
    names = {"hooks.example.com": ["93.184.215.14", "2606:4700::1111"]}

    found = check_url("https://Hooks.Example.com:8443/x", [], resolver(names))

    assert found == Target("hooks.example.com", ("93.184.215.14", "2606:4700::1111"))


def test_a_name_that_does_not_resolve_is_unresolved_at_delivery() -> None:
    found = check_url("https://gone.example/x", [], resolver({}))

    assert isinstance(found, Refusal)
    assert found.unresolved


def test_the_bounded_resolver_gives_up_after_its_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """A slow DNS answer costs the caller at most the wait, and counts as no address."""
    release = threading.Event()

    def slow(host: str) -> list[str]:
        release.wait(10)
        return ["127.0.0.1"]

    monkeypatch.setattr(webhooktargets, "system_resolve", slow)
    try:
        assert bounded_resolver(0.2)("slow.example") == []
    finally:
        release.set()


def test_the_event_loop_check_refuses_what_the_rule_refuses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[str] = []

    def resolve(host: str) -> list[str]:
        asked.append(host)
        return ["10.1.2.3"] if host == "internal.example" else ["93.184.216.34"]

    monkeypatch.setattr(webhooktargets, "system_resolve", resolve)
    settings = load_settings()

    async def check(url: str) -> FieldError | None:
        return await refused_webhook(url, settings)

    refused = asyncio.run(check("https://internal.example/hook"))
    assert refused is not None
    assert (refused.loc, refused.type, refused.input) == (
        ("webhook", "url"),
        "url_refused",
        "https://internal.example/hook",
    )
    assert asyncio.run(check("https://public.example/hook")) is None
    assert asyncio.run(check("http://127.0.0.1:9/hook")) is not None  # a literal: no look-up
    assert asyncio.run(check("ftp://public.example/")) is not None
    assert asyncio.run(check("https://internal.example./hook")) is not None
    assert asked == ["internal.example", "public.example", "internal.example"]


def test_the_event_loop_check_accepts_a_name_with_no_answer_in_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As at delivery, a name without an answer within the wait is accepted at submit."""
    release = threading.Event()

    def slow(host: str) -> list[str]:
        release.wait(10)
        return ["10.1.2.3"]

    monkeypatch.setattr(webhooktargets, "system_resolve", slow)
    settings = load_settings(webhook_dns_timeout_s=0.2)
    try:
        assert asyncio.run(refused_webhook("https://slow.example/hook", settings)) is None
    finally:
        release.set()
