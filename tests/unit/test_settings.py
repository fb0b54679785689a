"""inferfleet.settings: typed settings from INFERFLEET_* variables, failing loudly."""

from __future__ import annotations

import os

import pytest

from inferfleet.errors import ConfigError
from inferfleet.settings import load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No INFERFLEET_* variable from the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("INFERFLEET_"):
            monkeypatch.delenv(name)


def test_defaults_point_at_the_local_stack() -> None:
    settings = load_settings()

    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.worker_models == ["fraud"]
    assert settings.providers == [
        "TensorrtExecutionProvider",
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]


@pytest.mark.parametrize(
    ("variable", "value", "attribute", "expected"),
    [
        ("INFERFLEET_POLL_MAX_RECORDS", "500", "poll_max_records", 500),
        ("INFERFLEET_PRODUCE_TIMEOUT_S", "2.5", "produce_timeout_s", 2.5),
        ("INFERFLEET_KAFKA_BOOTSTRAP", "kafka:9092", "kafka_bootstrap", "kafka:9092"),
        ("INFERFLEET_WORKER_MODELS", '["a","b"]', "worker_models", ["a", "b"]),
        ("INFERFLEET_PROVIDERS", '["CPUExecutionProvider"]', "providers", ["CPUExecutionProvider"]),
    ],
)
def test_a_variable_sets_its_setting(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, attribute: str, expected: object
) -> None:
    monkeypatch.setenv(variable, value)

    assert getattr(load_settings(), attribute) == expected


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("INFERFLEET_POLL_MAX_RECORDS", "abc"),
        ("INFERFLEET_POLL_MAX_RECORDS", "0"),
        ("INFERFLEET_WORKER_HTTP_PORT", "70000"),
        ("INFERFLEET_PRODUCE_TIMEOUT_S", "-1"),
        ("INFERFLEET_MAX_POLL_INTERVAL_MS", "999"),
    ],
)
def test_a_malformed_variable_fails_naming_the_variable_and_value(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(ConfigError) as caught:
        load_settings()

    assert f"{variable} has value {value!r}" in str(caught.value)


def test_every_malformed_variable_is_named_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERFLEET_POLL_MAX_RECORDS", "abc")
    monkeypatch.setenv("INFERFLEET_WORKER_HTTP_PORT", "-1")

    with pytest.raises(ConfigError) as caught:
        load_settings()

    assert "INFERFLEET_POLL_MAX_RECORDS has value 'abc'" in str(caught.value)
    assert "INFERFLEET_WORKER_HTTP_PORT has value '-1'" in str(caught.value)


def test_a_malformed_list_variable_fails_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INFERFLEET_WORKER_MODELS", '["a", ')

    with pytest.raises(ConfigError, match="INFERFLEET_WORKER_MODELS has value '\\[\"a\", '"):
        load_settings()


@pytest.mark.parametrize("value", ["a,b", " a , b ", '["a", "b"]'])
def test_a_list_variable_is_json_or_comma_separated(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("INFERFLEET_WORKER_MODELS", value)

    assert load_settings().worker_models == ["a", "b"]


def test_an_unknown_variable_fails_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERFLEET_BOGUS", "1")

    with pytest.raises(ConfigError, match=r"unknown setting\(s\) INFERFLEET_BOGUS"):
        load_settings()


def test_the_client_s_variables_are_no_unknown_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    # A shell that uses inferfleet-client and runs a service holds both.
    monkeypatch.setenv("INFERFLEET_URL", "http://127.0.0.1:8000")
    monkeypatch.setenv("INFERFLEET_API_KEY", "key")

    assert load_settings().kafka_bootstrap


def test_an_unknown_override_fails_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"INFERFLEET_POLL_MAX_RECORD has value 5"):
        load_settings(poll_max_record=5)


def test_overrides_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERFLEET_POLL_MAX_RECORDS", "500")

    assert load_settings(poll_max_records=7).poll_max_records == 7


def test_secrets_never_appear_in_the_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERFLEET_DATABASE_URL", "postgresql+psycopg://app:hunter2@db:5432/app")
    monkeypatch.setenv("INFERFLEET_AWS_ACCESS_KEY_ID", "AKIAEXAMPLEKEYID")
    monkeypatch.setenv("INFERFLEET_AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMIexamplesecret")

    settings = load_settings()

    for text in (repr(settings), str(settings), repr(settings.model_dump())):
        assert "hunter2" not in text
        assert "AKIAEXAMPLEKEYID" not in text
        assert "wJalrXUtnFEMIexamplesecret" not in text
    assert settings.database_url.get_secret_value().endswith("hunter2@db:5432/app")
    assert settings.aws_secret_access_key.get_secret_value() == "wJalrXUtnFEMIexamplesecret"


def test_settings_are_frozen() -> None:
    settings = load_settings()

    with pytest.raises(ValueError, match="frozen"):
        settings.poll_max_records = 1  # type: ignore[misc]


def test_kafka_security_from_a_secret_written_for_keda(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "INFERFLEET_KAFKA_SASL_MECHANISM": "scram_sha512",
        "INFERFLEET_KAFKA_TLS": "enable",
        "INFERFLEET_KAFKA_SASL_USERNAME": "fleet",
        "INFERFLEET_KAFKA_SASL_PASSWORD": "s3cret",
        "INFERFLEET_KAFKA_SSL_CA": "",  # a key the Secret holds empty means unset
    }.items():
        monkeypatch.setenv(name, value)

    settings = load_settings()

    assert settings.kafka_security().effective_protocol() == "SASL_SSL"
    assert settings.kafka_sasl_mechanism == "SCRAM-SHA-512"
    assert settings.kafka_ssl_ca is None
    assert "s3cret" not in repr(settings)


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        (
            {"INFERFLEET_KAFKA_SECURITY_PROTOCOL": "SASL_TLS"},
            "INFERFLEET_KAFKA_SECURITY_PROTOCOL has value 'SASL_TLS'",
        ),
        (
            {"INFERFLEET_KAFKA_SASL_MECHANISM": "GSSAPI"},
            "INFERFLEET_KAFKA_SASL_MECHANISM has value 'GSSAPI'",
        ),
        (
            {
                "INFERFLEET_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "INFERFLEET_KAFKA_SASL_MECHANISM": "PLAIN",
            },
            "INFERFLEET_KAFKA_SECURITY_PROTOCOL is SASL_SSL, which needs "
            "INFERFLEET_KAFKA_SASL_USERNAME",
        ),
        (
            {"INFERFLEET_KAFKA_TLS": "enable", "INFERFLEET_KAFKA_SSL_CA": "/no/such/ca.pem"},
            "INFERFLEET_KAFKA_SSL_CA has value '/no/such/ca.pem'",
        ),
    ],
)
def test_kafka_security_that_cannot_connect_fails_at_load(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], message: str
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)

    with pytest.raises(ConfigError, match=message):
        load_settings()


def test_a_bad_secret_setting_is_named_but_its_value_is_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INFERFLEET_KAFKA_TLS", "enable")
    monkeypatch.setenv("INFERFLEET_KAFKA_SSL_CERT", "/no/such/cert.pem")
    monkeypatch.setenv("INFERFLEET_KAFKA_SSL_KEY", "not a key and not a file")

    with pytest.raises(ConfigError) as raised:
        load_settings()

    assert "INFERFLEET_KAFKA_SSL_KEY has value '**********'" in str(raised.value)
    assert "not a key and not a file" not in str(raised.value)
