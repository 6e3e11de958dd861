"""Twilio status callbacks (adapters/receipts/twilio.py): our X-Twilio-Signature
agrees with the twilio package's RequestValidator, anything tampered fails,
statuses and codes map as docs/receipts.md says, STOP/START are keywords."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from integration_hub.adapters.receipts import twilio
from integration_hub.adapters.receipts.common import BadSignature, MalformedReceipt
from integration_hub.domain.receipts import DeliveryState, SuppressionReason, suppression_for
from integration_hub.domain.routing import Channel

TOKEN = "12345abcdef0123456789abcdef01234"
URL = "https://hub.example.com/v1/receipts/twilio/acme"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
CALLBACK = {
    "AccountSid": "AC" + "0" * 32,
    "ApiVersion": "2010-04-01",
    "From": "+15005550006",
    "MessageSid": "SM" + "a" * 32,
    "MessageStatus": "delivered",
    "SmsSid": "SM" + "a" * 32,
    "SmsStatus": "delivered",
    "To": "+14155550100",
}

param_names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1)
param_values = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]))


@given(st.dictionaries(param_names, param_values, max_size=8), st.text(min_size=1))
def test_our_signature_is_the_one_twilio_request_validator_computes(
    params: dict[str, str], token: str
) -> None:
    expected = RequestValidator(token).compute_signature(URL, params)
    assert twilio.signature(token, URL, params) == expected
    twilio.verify(token, URL, params, expected)
    assert RequestValidator(token).validate(URL, params, twilio.signature(token, URL, params))


def test_the_example_of_twilios_webhook_security_page() -> None:
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+14158675310",
        "Digits": "1234",
        "From": "+14158675310",
        "To": "+18005551212",
    }
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert twilio.signature("12345", url, params) == "GvWf1cFY/Q7PnoempGyD5oXAezc="


def test_a_repeated_parameter_signs_each_distinct_value_as_twilio_does() -> None:
    class MultiDict(dict[str, list[str]]):
        def getall(self, name: str) -> list[str]:
            return self[name]

    params = MultiDict({"MediaUrl": ["b", "a", "a"], "Body": ["x"]})
    expected = RequestValidator(TOKEN).compute_signature(URL, params)
    assert twilio.signature(TOKEN, URL, params) == expected


@pytest.mark.parametrize(
    ("token", "url", "params"),
    [
        ("wrong-token-00000000000000000000", URL, CALLBACK),
        (TOKEN, URL.replace("acme", "other"), CALLBACK),  # another tenant's endpoint
        (TOKEN, URL.replace("https", "http"), CALLBACK),
        (TOKEN, URL + "?x=1", CALLBACK),
        (TOKEN, URL, {**CALLBACK, "MessageStatus": "read"}),
        (TOKEN, URL, {**CALLBACK, "ErrorCode": "30003"}),  # a parameter added
        (TOKEN, URL, {k: v for k, v in CALLBACK.items() if k != "To"}),  # one removed
    ],
)
def test_anything_tampered_fails(token: str, url: str, params: dict[str, str]) -> None:
    signed = RequestValidator(TOKEN).compute_signature(URL, CALLBACK)
    with pytest.raises(BadSignature):
        twilio.verify(token, url, params, signed)


@pytest.mark.parametrize("header", [None, "", "   ", "bm90IGl0", "é" * 28])
def test_a_missing_or_garbage_signature_fails(header: str | None) -> None:
    with pytest.raises(BadSignature):
        twilio.verify(TOKEN, URL, CALLBACK, header)


def test_no_auth_token_configured_fails_even_for_a_matching_empty_key() -> None:
    with pytest.raises(BadSignature):
        twilio.verify("", URL, CALLBACK, twilio.signature("", URL, CALLBACK))


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("queued", DeliveryState.SENT),
        ("sent", DeliveryState.SENT),
        ("delivered", DeliveryState.DELIVERED),
        ("undelivered", DeliveryState.UNDELIVERED),
        ("failed", DeliveryState.UNDELIVERED),
        ("read", DeliveryState.READ),
    ],
)
def test_statuses_map_to_delivery_states(status: str, state: DeliveryState) -> None:
    [receipt] = twilio.parse_status("acme", {**CALLBACK, "MessageStatus": status}, NOW)
    assert receipt.state is state
    assert receipt.raw_status == status
    assert receipt.provider == "twilio"
    assert receipt.provider_message_id == CALLBACK["MessageSid"]
    assert receipt.recipient == "+14155550100"
    assert receipt.channel is Channel.SMS
    assert receipt.occurred_at is None
    assert receipt.received_at == NOW


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("30003", None),
        ("30005", None),
        ("30006", SuppressionReason.LANDLINE),
        ("30007", None),
        ("30004", SuppressionReason.BLOCKED),
        ("21610", SuppressionReason.OPTED_OUT),
    ],
)
def test_error_codes_are_kept_and_suppress_as_documented(
    code: str, reason: SuppressionReason | None
) -> None:
    params = {**CALLBACK, "MessageStatus": "undelivered", "ErrorCode": code}
    [receipt] = twilio.parse_status("acme", params, NOW)
    assert receipt.error_code == code
    assert suppression_for(receipt) == reason


def test_whatsapp_through_twilio_is_the_whatsapp_channel() -> None:
    params = {**CALLBACK, "MessageStatus": "read", "To": "whatsapp:+5215512345678"}
    [receipt] = twilio.parse_status("acme", params, NOW)
    assert receipt.channel is Channel.WHATSAPP
    assert receipt.recipient == "+5215512345678"
    assert receipt.state is DeliveryState.READ


def test_an_inbound_message_status_is_no_receipt() -> None:
    assert twilio.parse_status("acme", {**CALLBACK, "MessageStatus": "received"}, NOW) == []


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"MessageSid": "SM1"},
        {"MessageStatus": "delivered"},
        {"MessageSid": "SM1", "MessageStatus": "exploded"},
        {"MessageSid": "SM1", "MessageStatus": "failed", "ErrorCode": "30003; DROP"},
    ],
)
def test_a_callback_twilio_would_not_send_is_malformed(params: dict[str, str]) -> None:
    with pytest.raises(MalformedReceipt):
        twilio.parse_status("acme", params, NOW)


@pytest.mark.parametrize(
    ("body", "action"),
    [
        ("STOP", twilio.OptAction.OPT_OUT),
        ("  stop ", twilio.OptAction.OPT_OUT),
        ("Unsubscribe", twilio.OptAction.OPT_OUT),
        ("ARRÊT", twilio.OptAction.OPT_OUT),
        ("arret", twilio.OptAction.OPT_OUT),
        ("Baja.", twilio.OptAction.OPT_OUT),
        ("START", twilio.OptAction.OPT_IN),
        ("unstop", twilio.OptAction.OPT_IN),
        ("please stop texting me", None),  # only the whole message is a keyword
        ("STOPPED", None),
        ("", None),
        ("hello", None),
    ],
)
def test_inbound_keywords(body: str, action: twilio.OptAction | None) -> None:
    assert twilio.inbound_keyword(body) == action


def test_the_keyword_lists_are_configurable() -> None:
    assert (
        twilio.inbound_keyword("alto", opt_out=["ALTO"], opt_in=["SI"]) is twilio.OptAction.OPT_OUT
    )
    assert twilio.inbound_keyword("STOP", opt_out=["ALTO"], opt_in=["SI"]) is None
    assert twilio.inbound_keyword("sí", opt_out=["ALTO"], opt_in=["SI"]) is twilio.OptAction.OPT_IN


def test_the_inbound_sender_is_e164_and_required() -> None:
    assert twilio.inbound_sender({"From": "+1 415 555 0100"}) == "+14155550100"
    with pytest.raises(MalformedReceipt):
        twilio.inbound_sender({})
    with pytest.raises(MalformedReceipt):
        twilio.inbound_sender({"From": "ACME"})
