"""How the project's Kafka clients authenticate: the words the settings accept, and
the rules that make a combination of them whole.

The settings take Kafka's own spellings (`SASL_SSL`, `SCRAM-SHA-512`) and also KEDA's,
so a Kubernetes Secret written for KEDA's TriggerAuthentication (`sasl: scram_sha512`,
`tls: enable`) feeds the services unchanged. Without an explicit security protocol, the
protocol follows from TLS and the SASL mechanism, as it does for KEDA.

Pure: nothing here opens a file or a connection.
"""

from __future__ import annotations

from dataclasses import dataclass

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
# KEDA's kafka scaler names the mechanisms this way (its `sasl` parameter).
KEDA_MECHANISMS = {
    "plaintext": "PLAIN",
    "scram_sha256": "SCRAM-SHA-256",
    "scram_sha512": "SCRAM-SHA-512",
}
# Values that mean "no SASL", as a KEDA Secret or an empty variable says it.
NO_MECHANISM = frozenset({"", "none"})
TLS_WORDS = {"enable": True, "disable": False}
PEM_START = "-----BEGIN"


def parse_protocol(value: object) -> object:
    """`value` as one of PROTOCOLS (any case), None when empty; else ValueError."""
    if not isinstance(value, str):
        return value
    if not value.strip():
        return None
    protocol = value.strip().upper()
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown Kafka security protocol {value!r}; known: {list(PROTOCOLS)}")
    return protocol


def parse_mechanism(value: object) -> object:
    """`value` as one of MECHANISMS (Kafka's or KEDA's spelling), None for no SASL."""
    if not isinstance(value, str):
        return value
    word = value.strip()
    if word.lower() in NO_MECHANISM:
        return None
    mechanism = KEDA_MECHANISMS.get(word.lower(), word.upper())
    if mechanism not in MECHANISMS:
        known = [*MECHANISMS, *KEDA_MECHANISMS]
        raise ValueError(f"unknown SASL mechanism {value!r}; known: {known}")
    return mechanism


def parse_tls(value: object) -> object:
    """KEDA's `enable`/`disable` as a bool, None when empty; other words go to pydantic."""
    if not isinstance(value, str):
        return value
    word = value.strip().lower()
    if not word:
        return None
    return TLS_WORDS.get(word, value)


def is_pem(value: str) -> bool:
    """Whether a certificate or key setting holds PEM text rather than a file's path."""
    return value.lstrip().startswith(PEM_START)


@dataclass(frozen=True)
class KafkaSecurity:
    """What the Kafka security settings say, before they are checked."""

    protocol: str | None
    tls: bool | None
    mechanism: str | None
    has_username: bool
    has_password: bool
    has_ca: bool
    has_cert: bool
    has_key: bool

    def effective_protocol(self) -> str:
        """The protocol set, or the one TLS and the mechanism imply."""
        if self.protocol is not None:
            return self.protocol
        tls = "SSL" if self.tls else "PLAINTEXT"
        if self.mechanism is None:
            return tls
        return "SASL_" + tls

    def problems(self) -> list[str]:
        """Each reason the combination cannot connect, naming the settings; [] if none."""
        found: list[str] = []
        protocol = self.effective_protocol()
        named = f"INFERFLEET_KAFKA_SECURITY_PROTOCOL is {protocol}"
        sasl = protocol.startswith("SASL_")
        ssl = protocol.endswith("SSL")
        if self.protocol is not None and self.tls is not None and self.tls != ssl:
            found.append(
                f"INFERFLEET_KAFKA_TLS is {'enable' if self.tls else 'disable'} but {named}"
            )
        if sasl and self.mechanism is None:
            found.append(f"{named}, which needs INFERFLEET_KAFKA_SASL_MECHANISM")
        if not sasl and self.mechanism is not None:
            found.append(
                f"INFERFLEET_KAFKA_SASL_MECHANISM is {self.mechanism} but {named}, "
                "which has no SASL"
            )
        if sasl and not self.has_username:
            found.append(f"{named}, which needs INFERFLEET_KAFKA_SASL_USERNAME")
        if sasl and not self.has_password:
            found.append(f"{named}, which needs INFERFLEET_KAFKA_SASL_PASSWORD")
        if not ssl:
            for setting, given in (
                ("INFERFLEET_KAFKA_SSL_CA", self.has_ca),
                ("INFERFLEET_KAFKA_SSL_CERT", self.has_cert),
                ("INFERFLEET_KAFKA_SSL_KEY", self.has_key),
            ):
                if given:
                    found.append(f"{setting} is set but {named}, which has no TLS")
        if self.has_cert != self.has_key:
            found.append(
                "INFERFLEET_KAFKA_SSL_CERT and INFERFLEET_KAFKA_SSL_KEY go together: "
                f"only {'the certificate' if self.has_cert else 'the key'} is set"
            )
        return found
