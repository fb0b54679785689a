"""Where and how every Kafka client of the project connects: one set of keyword
arguments for KafkaProducer, KafkaConsumer and KafkaAdminClient alike.

A certificate or key given as PEM text (as a Kubernetes Secret holds it) is written once
per process to a private temporary file, because Python's `ssl` loads client
certificates only from files; the folder is removed when the process exits.

A broker that refuses a login closes the connection, and kafka-python retries until its
bootstrap timeout and then says only "Unable to bootstrap"; `explain` adds to such an
error how the client tried to log in, so a wrong password is looked for where it is.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import tempfile
import threading
from typing import Any

from inferfleet.kafkasecurity import is_pem
from inferfleet.settings import Settings

_lock = threading.Lock()
_folder: str | None = None


def kafka_connection(settings: Settings) -> dict[str, Any]:
    """`bootstrap_servers` and the security arguments `settings` ask for.

    Only the arguments the protocol uses are present, so a plaintext setup passes
    exactly what kafka-python's defaults would have been.
    """
    protocol = settings.kafka_security().effective_protocol()
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": protocol,
    }
    if protocol.startswith("SASL_"):
        assert settings.kafka_sasl_username is not None  # Settings checked the combination
        assert settings.kafka_sasl_password is not None
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    if protocol.endswith("SSL"):
        if settings.kafka_ssl_ca is not None:
            options["ssl_cafile"] = _as_file(settings.kafka_ssl_ca, "ca")
        if settings.kafka_ssl_cert is not None and settings.kafka_ssl_key is not None:
            options["ssl_certfile"] = _as_file(settings.kafka_ssl_cert, "cert")
            options["ssl_keyfile"] = _as_file(settings.kafka_ssl_key.get_secret_value(), "key")
    return options


def _as_file(value: str, kind: str) -> str:
    """`value` itself when it is a path; else the path of a private file holding it."""
    if not is_pem(value):
        return value
    global _folder
    digest = hashlib.sha256(value.encode()).hexdigest()[:16]
    with _lock:
        if _folder is None:
            _folder = tempfile.mkdtemp(prefix="inferfleet-kafka-")  # mode 0700
            atexit.register(shutil.rmtree, _folder, True)
        path = os.path.join(_folder, f"{kind}-{digest}.pem")
        if not os.path.exists(path):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(value)
    return path


def explain(error: BaseException, settings: Settings) -> str:
    """`error` as one line, with how the client connected when that was not plaintext."""
    text = f"{type(error).__name__}: {error}"
    protocol = settings.kafka_security().effective_protocol()
    if protocol == "PLAINTEXT":
        return text
    how = protocol
    if protocol.startswith("SASL_"):
        how += f", {settings.kafka_sasl_mechanism} as user {settings.kafka_sasl_username!r}"
    return (
        f"{text} (connecting with {how}: a refused login or certificate fails like this "
        "too; check the INFERFLEET_KAFKA_SASL_* and _SSL_* settings)"
    )
