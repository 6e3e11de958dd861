"""WhatsApp Cloud API webhooks (adapters/receipts/whatsapp.py): the GET
handshake, X-Hub-Signature-256 over the raw bytes, many statuses per payload,
and garbage of every shape refused with MalformedReceipt only."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from integration_hub.adapters.receipts import whatsapp
from integration_hub.adapters.receipts.common import (
    MAX_BODY_BYTES,
    BadSignature,
    BodyTooLarge,
    MalformedReceipt,
)
from integration_hub.domain.receipts import DeliveryState, SuppressionReason, suppression_for
from integration_hub.domain.routing import Channel

SECRET = "app-secret-0123456789"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def status(wamid: str, state: str, ts: int = 1767225600, **extra: Any) -> dict[str, Any]:
    return {
        "id": wamid,
        "status": state,
        "timestamp": str(ts),
        "recipient_id": "5215512345678",
        **extra,
    }


def payload(*statuses: dict[str, Any], changes: int = 1) -> dict[str, Any]:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001111", "phone_number_id": "1234"},
        "statuses": list(statuses),
    }
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": value}] * changes}],
    }


def raw(value: object) -> bytes:
    return json.dumps(value).encode()


def meta_signs(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_the_handshake_echoes_the_challenge_for_our_token() -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": "tok", "hub.challenge": "1158201444"}
    assert whatsapp.verify_subscription(query, "tok") == "1158201444"


@pytest.mark.parametrize(
    "query",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "other", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": "tok", "hub.challenge": "1"},
        {"hub.verify_token": "tok", "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.challenge": "1"},
    ],
)
def test_a_handshake_without_our_token_or_mode_fails(query: dict[str, str]) -> None:
    with pytest.raises(BadSignature):
        whatsapp.verify_subscription(query, "tok")


def test_a_handshake_fails_when_no_token_is_configured() -> None:
    with pytest.raises(BadSignature):
        whatsapp.verify_subscription({"hub.mode": "subscribe", "hub.verify_token": ""}, "")


@pytest.mark.parametrize("challenge", [None, "", "a\nb", "x" * 513])
def test_a_challenge_we_would_not_echo_is_malformed(challenge: str | None) -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": "tok"}
    if challenge is not None:
        query["hub.challenge"] = challenge
    with pytest.raises(MalformedReceipt):
        whatsapp.verify_subscription(query, "tok")


@given(st.binary(max_size=2048))
def test_the_signature_is_hmac_sha256_of_the_raw_bytes(body: bytes) -> None:
    header = meta_signs(body)
    whatsapp.verify(SECRET, body, header)
    whatsapp.verify(SECRET, body, header.upper().replace("SHA256=", "sha256="))
    assert whatsapp.signature(SECRET, body) == header


def test_the_same_json_with_other_bytes_fails() -> None:
    body = raw(payload(status("wamid.1", "delivered")))
    reformatted = json.dumps(json.loads(body), indent=2).encode()
    with pytest.raises(BadSignature):
        whatsapp.verify(SECRET, reformatted, meta_signs(body))


@pytest.mark.parametrize(
    "header",
    [None, "", "sha256=", "sha1=" + "0" * 40, "sha256=" + "0" * 64, "sha256=zz", "é"],
)
def test_a_missing_or_wrong_signature_fails(header: str | None) -> None:
    with pytest.raises(BadSignature):
        whatsapp.verify(SECRET, b"{}", header)


def test_another_app_secret_fails() -> None:
    body = raw(payload(status("wamid.1", "read")))
    with pytest.raises(BadSignature):
        whatsapp.verify(SECRET, body, meta_signs(body, "another-apps-secret"))
    with pytest.raises(BadSignature):
        whatsapp.verify("", body, meta_signs(body, ""))


def test_many_statuses_for_many_messages_in_one_payload() -> None:
    body = raw(
        payload(
            status("wamid.A", "read", 1767225605),
            status("wamid.A", "delivered", 1767225601),  # read before delivered
            status("wamid.B", "sent"),
            status("wamid.C", "failed", errors=[{"code": 131026, "title": "Undeliverable"}]),
            changes=2,
        )
    )
    receipts = whatsapp.parse("acme", body, NOW)
    assert len(receipts) == 8
    assert [(r.provider_message_id, r.state) for r in receipts[:4]] == [
        ("wamid.A", DeliveryState.READ),
        ("wamid.A", DeliveryState.DELIVERED),
        ("wamid.B", DeliveryState.SENT),
        ("wamid.C", DeliveryState.UNDELIVERED),
    ]
    failed = receipts[3]
    assert failed.error_code == "131026"
    assert suppression_for(failed) is SuppressionReason.NOT_ON_WHATSAPP
    assert failed.recipient == "+5215512345678"
    assert failed.channel is Channel.WHATSAPP
    assert receipts[0].occurred_at == datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC)
    assert receipts[0].identity == receipts[4].identity  # the second change repeats the first


def test_an_opt_out_code_suppresses() -> None:
    body = raw(payload(status("wamid.1", "failed", errors=[{"code": "131050"}])))
    [receipt] = whatsapp.parse("acme", body, NOW)
    assert suppression_for(receipt) is SuppressionReason.OPTED_OUT


def test_a_payload_without_statuses_is_no_receipt() -> None:
    inbound = payload()
    del inbound["entry"][0]["changes"][0]["value"]["statuses"]
    inbound["entry"][0]["changes"][0]["value"]["messages"] = [{"id": "wamid.in", "type": "text"}]
    assert whatsapp.parse("acme", raw(inbound), NOW) == []
    other_field = payload(status("wamid.1", "read"))
    other_field["entry"][0]["changes"][0]["field"] = "message_template_status_update"
    assert whatsapp.parse("acme", raw(other_field), NOW) == []


GARBAGE: list[bytes] = [
    b"",
    b"\xff\xfe",
    b"not json",
    b"[]",
    b"null",
    b'"string"',
    b"[" * 100_000 + b"]" * 100_000,
    raw({"object": "page", "entry": []}),
    raw({"object": "whatsapp_business_account", "entry": "x"}),
    raw({"object": "whatsapp_business_account", "entry": [1, 2]}),
    raw({"object": "whatsapp_business_account", "entry": [{"changes": {"a": 1}}]}),
    raw({"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages"}]}]}),
    raw(payload({"id": "w", "status": "delivered"})),  # no timestamp
    raw(payload({"status": "delivered", "timestamp": "1"})),  # no id
    raw(payload(status("w", "exploded"))),
    raw(payload(status("w", "delivered", ts=-1))),
    raw(payload({**status("w", "read"), "timestamp": 1.5})),
    raw(payload({**status("w", "read"), "timestamp": True})),
    raw(payload({**status("w", "read"), "timestamp": "9" * 40})),
    raw(payload(status("w", "failed", errors=[{"code": None}]))),
    raw(payload(status("w", "failed", errors=[{"code": "abc"}]))),
    raw(payload(status("w", "failed", errors="boom"))),
    raw(payload({**status("w", "read"), "id": 7})),
    b" " * MAX_BODY_BYTES,  # 1 MiB of white space: parsed, refused
]


@pytest.mark.parametrize("body", GARBAGE, ids=range(len(GARBAGE)))
def test_garbage_is_malformed_and_nothing_else(body: bytes) -> None:
    with pytest.raises(MalformedReceipt):
        whatsapp.parse("acme", body, NOW)


def test_a_body_over_the_limit_is_refused_unread() -> None:
    body = b"{" + b"x" * MAX_BODY_BYTES
    with pytest.raises(BodyTooLarge):
        whatsapp.parse("acme", body, NOW)
    with pytest.raises(BodyTooLarge):
        whatsapp.verify(SECRET, body, meta_signs(body))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=20,
)


@given(json_values)
def test_any_json_is_receipts_or_malformed(value: object) -> None:
    with contextlib.suppress(MalformedReceipt):
        whatsapp.parse("acme", json.dumps(value).encode(), NOW)


@given(json_values)
def test_any_json_inside_a_status_is_receipts_or_malformed(value: object) -> None:
    for key in ("id", "status", "timestamp", "errors", "recipient_id"):
        body = raw(payload({**status("w", "failed"), key: value}))
        with contextlib.suppress(MalformedReceipt):
            whatsapp.parse("acme", body, NOW)
