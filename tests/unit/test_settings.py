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
    assert settings.providers == ["CUDAExecutionProvider", "CPUExecutionProvider"]


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
