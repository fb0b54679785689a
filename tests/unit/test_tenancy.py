"""inferfleet.tenants.uris: which S3 URIs a tenant may name, however they are spelled."""

from __future__ import annotations

import re

import pytest

from inferfleet.errors import ConfigError
from inferfleet.tenants.uris import allowed_uri, normalise, readings, tenant_prefixes

DEFAULT = ["s3://{bucket}/tenants/{tenant}/"]
ACME = ["s3://inferfleet/tenants/acme/"]


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://b1b/a/b.json", "s3://b1b/a/b.json"),
        ("s3://b1b/a//b.json", "s3://b1b/a/b.json"),
        ("s3://b1b//a/./b.json", "s3://b1b/a/b.json"),
        ("s3://b1b/a/x/../b.json", "s3://b1b/a/b.json"),
        ("s3://b1b/a/", "s3://b1b/a/"),
        ("s3://b1b/a/x/..", "s3://b1b/a/"),
        ("s3://b1b/", "s3://b1b/"),
        ("s3://b1b/..", None),
        ("s3://b1b/a/../../b.json", None),
        ("S3://b1b/a.json", None),
        ("https://b1b/a.json", None),
        ("s3://Bucket/a.json", None),
        ("s3://b/a.json", None),
        ("s3:///a.json", None),
        ("s3://b1b/a\x00.json", None),
        ("s3://b1b/a\n.json", None),
    ],
)
def test_normalise(uri: str, expected: str | None) -> None:
    assert normalise(uri) == expected


def test_readings_decode_until_stable_and_read_backslashes_as_slashes() -> None:
    assert readings("s3://b1b/a/b.json") == ["s3://b1b/a/b.json"]
    assert readings("s3://b1b/a/%252e%252e\\x") == [
        "s3://b1b/a/%252e%252e\\x",
        "s3://b1b/a/%2e%2e\\x",
        "s3://b1b/a/..\\x",
        "s3://b1b/a/%252e%252e/x",
        "s3://b1b/a/%2e%2e/x",
        "s3://b1b/a/../x",
    ]
    assert readings("s3://b1b/%" + "25" * 10 + "41") is None  # decoded 10 times over


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        # Under the prefix, as sent or once normalised: the normalised form is returned.
        ("s3://inferfleet/tenants/acme/in.json", "s3://inferfleet/tenants/acme/in.json"),
        ("s3://inferfleet/tenants/acme/a/b/c.json", "s3://inferfleet/tenants/acme/a/b/c.json"),
        ("s3://inferfleet/tenants//acme/./in.json", "s3://inferfleet/tenants/acme/in.json"),
        ("s3://inferfleet/tenants/acme/x/../in.json", "s3://inferfleet/tenants/acme/in.json"),
        # Encodings that stay inside in every reading keep their literal spelling.
        ("s3://inferfleet/tenants/acme/a%20b.json", "s3://inferfleet/tenants/acme/a%20b.json"),
        ("s3://inferfleet/tenants/acme/a%2Fb.json", "s3://inferfleet/tenants/acme/a%2Fb.json"),
        # Another tenant, a sibling whose name starts the same, the system prefixes.
        ("s3://inferfleet/tenants/other/in.json", None),
        ("s3://inferfleet/tenants/acme-evil/in.json", None),
        ("s3://inferfleet/tenants/acmex", None),
        ("s3://inferfleet/claims/job_1.json", None),
        ("s3://inferfleet/results/acme/job_1.json", None),
        ("s3://elsewhere/tenants/acme/in.json", None),
        # The prefix itself is not an object.
        ("s3://inferfleet/tenants/acme/", None),
        ("s3://inferfleet/tenants/acme", None),
        # Traversal, spelled plainly, encoded, double-encoded, mixed case, backslashed.
        ("s3://inferfleet/tenants/acme/../other/in.json", None),
        ("s3://inferfleet/tenants/acme/%2e%2e/other/in.json", None),
        ("s3://inferfleet/tenants/acme/%2E%2E/other/in.json", None),
        ("s3://inferfleet/tenants/acme/.%2e/other/in.json", None),
        ("s3://inferfleet/tenants/acme/%252e%252e/other/in.json", None),
        ("s3://inferfleet/tenants/acme/..%2fother/in.json", None),
        ("s3://inferfleet/tenants/acme/..%2Fother/in.json", None),
        ("s3://inferfleet/tenants/acme/..\\other\\in.json", None),
        ("s3://inferfleet/tenants/acme/..%5cother/in.json", None),
        ("s3://inferfleet/tenants/acme/a/../../other/in.json", None),
        ("s3://inferfleet/tenants/acme/%00.json", None),
        ("s3://inferfleet/tenants/acme/a\x01.json", None),
        # Not an S3 URI of the bucket at all.
        ("S3://inferfleet/tenants/acme/in.json", None),
        ("s3:/inferfleet/tenants/acme/in.json", None),
        ("http://inferfleet/tenants/acme/in.json", None),
        ("", None),
    ],
)
def test_allowed_uri(uri: str, expected: str | None) -> None:
    assert allowed_uri(uri, ACME) == expected


def test_tenant_prefixes_fill_templates_and_end_in_a_slash() -> None:
    assert tenant_prefixes(DEFAULT, "inferfleet", "acme") == ["s3://inferfleet/tenants/acme/"]
    templates = ["s3://{bucket}/t/{tenant}", "s3://shared-{tenant}/in/", "s3://{bucket}/x/./y/"]
    assert tenant_prefixes(templates, "inferfleet", "acme") == [
        "s3://inferfleet/t/acme/",
        "s3://shared-acme/in/",
        "s3://inferfleet/x/y/",
    ]


@pytest.mark.parametrize("tenant", ["", ".", "..", "a/b", "a\\b", "%2e%2e", "../other"])
def test_a_tenant_name_that_could_move_its_prefix_gets_none(tenant: str) -> None:
    assert tenant_prefixes(DEFAULT, "inferfleet", tenant) == []
    assert allowed_uri("s3://inferfleet/tenants/other/in.json", []) is None


def test_a_template_that_makes_no_s3_prefix_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=re.escape("PREFIXES entry 'tenants/{tenant}/'")):
        tenant_prefixes(["tenants/{tenant}/"], "inferfleet", "acme")
