"""inferfleet.kafkasecurity: the words the Kafka security settings take, and which
combinations of them can connect."""

from __future__ import annotations

from dataclasses import replace

import pytest

from inferfleet.kafkasecurity import (
    KafkaSecurity,
    parse_mechanism,
    parse_protocol,
    parse_tls,
)

NOTHING = KafkaSecurity(
    protocol=None,
    tls=None,
    mechanism=None,
    has_username=False,
    has_password=False,
    has_ca=False,
    has_cert=False,
    has_key=False,
)
LOGIN = replace(NOTHING, has_username=True, has_password=True)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("SASL_SSL", "SASL_SSL"), ("sasl_ssl", "SASL_SSL"), (" ssl ", "SSL"), ("", None)],
)
def test_protocols_in_any_case(value: str, expected: str | None) -> None:
    assert parse_protocol(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("PLAIN", "PLAIN"),
        ("SCRAM-SHA-512", "SCRAM-SHA-512"),
        ("scram-sha-256", "SCRAM-SHA-256"),
        # KEDA's spellings, as its TriggerAuthentication's Secret holds them.
        ("plaintext", "PLAIN"),
        ("scram_sha512", "SCRAM-SHA-512"),
        ("scram_sha256", "SCRAM-SHA-256"),
        ("none", None),
        ("", None),
    ],
)
def test_mechanisms_in_kafkas_and_kedas_words(value: str, expected: str | None) -> None:
    assert parse_mechanism(value) == expected


@pytest.mark.parametrize(
    ("parse", "value", "named"),
    [
        (parse_protocol, "TLS", "unknown Kafka security protocol 'TLS'"),
        (parse_mechanism, "GSSAPI", "unknown SASL mechanism 'GSSAPI'"),
        (parse_mechanism, "oauthbearer", "unknown SASL mechanism 'oauthbearer'"),
    ],
)
def test_unknown_words_are_refused_naming_them(parse: object, value: str, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        parse(value)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("value", "expected"), [("enable", True), ("Disable", False), ("", None), ("true", "true")]
)
def test_tls_takes_kedas_enable_and_disable(value: str, expected: object) -> None:
    assert parse_tls(value) == expected


@pytest.mark.parametrize(
    ("security", "protocol"),
    [
        (NOTHING, "PLAINTEXT"),
        (replace(NOTHING, tls=True), "SSL"),
        (replace(LOGIN, mechanism="PLAIN"), "SASL_PLAINTEXT"),
        (replace(LOGIN, mechanism="SCRAM-SHA-512", tls=True), "SASL_SSL"),
        (replace(LOGIN, mechanism="SCRAM-SHA-512", tls=False), "SASL_PLAINTEXT"),
        (replace(NOTHING, protocol="SSL"), "SSL"),
    ],
)
def test_without_a_protocol_it_follows_from_tls_and_the_mechanism(
    security: KafkaSecurity, protocol: str
) -> None:
    assert security.effective_protocol() == protocol
    assert security.problems() == []


@pytest.mark.parametrize(
    ("security", "problem"),
    [
        (
            replace(LOGIN, protocol="SASL_SSL"),
            "INFERFLEET_KAFKA_SECURITY_PROTOCOL is SASL_SSL, which needs "
            "INFERFLEET_KAFKA_SASL_MECHANISM",
        ),
        (
            replace(NOTHING, protocol="SASL_SSL", mechanism="PLAIN", has_password=True),
            "which needs INFERFLEET_KAFKA_SASL_USERNAME",
        ),
        (
            replace(NOTHING, mechanism="SCRAM-SHA-512", has_username=True),
            "INFERFLEET_KAFKA_SECURITY_PROTOCOL is SASL_PLAINTEXT, which needs "
            "INFERFLEET_KAFKA_SASL_PASSWORD",
        ),
        (
            replace(LOGIN, protocol="SSL", mechanism="PLAIN"),
            "INFERFLEET_KAFKA_SASL_MECHANISM is PLAIN but INFERFLEET_KAFKA_SECURITY_PROTOCOL "
            "is SSL, which has no SASL",
        ),
        (
            replace(NOTHING, protocol="PLAINTEXT", tls=True),
            "INFERFLEET_KAFKA_TLS is enable but INFERFLEET_KAFKA_SECURITY_PROTOCOL is PLAINTEXT",
        ),
        (
            replace(NOTHING, has_ca=True),
            "INFERFLEET_KAFKA_SSL_CA is set but INFERFLEET_KAFKA_SECURITY_PROTOCOL is "
            "PLAINTEXT, which has no TLS",
        ),
        (
            replace(NOTHING, tls=True, has_cert=True),
            "INFERFLEET_KAFKA_SSL_CERT and INFERFLEET_KAFKA_SSL_KEY go together: only the "
            "certificate is set",
        ),
    ],
)
def test_a_combination_that_cannot_connect_names_its_settings(
    security: KafkaSecurity, problem: str
) -> None:
    assert any(problem in p for p in security.problems()), security.problems()
