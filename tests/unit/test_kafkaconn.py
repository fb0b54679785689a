"""inferfleet.clients.kafkaconn: the keyword arguments every Kafka client is made with."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from inferfleet.clients.kafkaconn import explain, kafka_connection
from inferfleet.settings import Settings

CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
KEY = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("INFERFLEET_"):
            monkeypatch.delenv(name)


def test_plaintext_passes_only_where_the_brokers_are() -> None:
    options = kafka_connection(Settings(kafka_bootstrap="kafka:9092"))

    assert options == {"bootstrap_servers": "kafka:9092", "security_protocol": "PLAINTEXT"}


def test_sasl_ssl_passes_the_login_and_the_files(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text(CERT)
    settings = Settings(
        kafka_bootstrap="kafka:9093",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="fleet",
        kafka_sasl_password="s3cret",  # type: ignore[arg-type]
        kafka_ssl_ca=str(ca),
    )

    assert kafka_connection(settings) == {
        "bootstrap_servers": "kafka:9093",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "fleet",
        "sasl_plain_password": "s3cret",
        "ssl_cafile": str(ca),
    }


def test_pem_text_is_written_to_private_files_once() -> None:
    settings = Settings(
        kafka_tls=True,
        kafka_ssl_ca=CERT,
        kafka_ssl_cert=CERT,
        kafka_ssl_key=KEY,  # type: ignore[arg-type]
    )

    first = kafka_connection(settings)
    again = kafka_connection(settings)

    assert first == again
    assert first["security_protocol"] == "SSL"
    assert Path(first["ssl_cafile"]).read_text() == CERT
    assert Path(first["ssl_certfile"]).read_text() == CERT
    key = Path(first["ssl_keyfile"])
    assert key.read_text() == KEY
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700


def test_explain_says_how_a_secured_client_logged_in_but_never_the_password() -> None:
    settings = Settings(
        kafka_sasl_mechanism="scram_sha512",
        kafka_tls=True,
        kafka_sasl_username="fleet",
        kafka_sasl_password="s3cret",  # type: ignore[arg-type]
    )

    text = explain(TimeoutError("Unable to bootstrap"), settings)

    assert text.startswith("TimeoutError: Unable to bootstrap (connecting with SASL_SSL, ")
    assert "SCRAM-SHA-512 as user 'fleet'" in text
    assert "s3cret" not in text
    assert explain(TimeoutError("x"), Settings()) == "TimeoutError: x"
