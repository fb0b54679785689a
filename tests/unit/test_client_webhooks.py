"""`verify_webhook` against what the server signs (inferfleet.jobs.webhooks.signed_headers,
made with the `standardwebhooks` library): rotation, tolerance, tampering."""

from __future__ import annotations

import base64
import json
import os

import pytest

from inferfleet.jobs.webhooks import signed_headers
from inferfleet_client import WebhookVerificationError, verify_webhook

NOW = 1_800_000_000


def secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


BODY = json.dumps({"type": "job.succeeded", "timestamp": "t", "data": {"id": "job_1"}})


def test_a_webhook_the_server_signed_verifies_and_gives_its_body() -> None:
    key = secret()
    headers = signed_headers([key], "msg_1", NOW, BODY)

    event = verify_webhook(BODY.encode(), headers, key, now=NOW)

    assert event["data"]["id"] == "job_1"
    # Header names in any case, the body as str or bytes.
    upper = {k.upper(): v for k, v in headers.items()}
    assert verify_webhook(BODY, upper, key, now=NOW) == event


def test_during_a_rotation_either_secret_verifies_and_a_third_does_not() -> None:
    old, new = secret(), secret()
    headers = signed_headers([new, old], "msg_2", NOW, BODY)
    assert len(headers["webhook-signature"].split()) == 2

    assert verify_webhook(BODY, headers, old, now=NOW)["type"] == "job.succeeded"
    assert verify_webhook(BODY, headers, new, now=NOW)["type"] == "job.succeeded"
    # A receiver holding both (it rotated first) accepts what only the old one signed.
    only_old = signed_headers([old], "msg_3", NOW, BODY)
    assert verify_webhook(BODY, only_old, [new, old], now=NOW)["type"] == "job.succeeded"
    with pytest.raises(WebhookVerificationError, match="no signature"):
        verify_webhook(BODY, headers, secret(), now=NOW)


@pytest.mark.parametrize(
    ("skew", "ok"), [(0, True), (299, True), (-299, True), (301, False), (-301, False)]
)
def test_timestamps_outside_the_tolerance_are_refused(skew: int, ok: bool) -> None:
    key = secret()
    headers = signed_headers([key], "msg_4", NOW, BODY)
    if ok:
        verify_webhook(BODY, headers, key, now=NOW + skew)
    else:
        with pytest.raises(WebhookVerificationError, match="webhook-timestamp"):
            verify_webhook(BODY, headers, key, now=NOW + skew)


def test_a_changed_body_id_or_timestamp_is_refused() -> None:
    key = secret()
    headers = signed_headers([key], "msg_5", NOW, BODY)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(BODY.replace("job_1", "job_2"), headers, key, now=NOW)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(BODY, {**headers, "webhook-id": "msg_6"}, key, now=NOW)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(BODY, {**headers, "webhook-timestamp": str(NOW + 1)}, key, now=NOW)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_header_is_named(missing: str) -> None:
    key = secret()
    headers = signed_headers([key], "msg_7", NOW, BODY)
    del headers[missing]

    with pytest.raises(WebhookVerificationError, match=missing):
        verify_webhook(BODY, headers, key, now=NOW)


def test_a_timestamp_that_is_no_number_is_refused() -> None:
    key = secret()
    headers = {**signed_headers([key], "msg_8", NOW, BODY), "webhook-timestamp": "yesterday"}

    with pytest.raises(WebhookVerificationError, match="yesterday"):
        verify_webhook(BODY, headers, key, now=NOW)
