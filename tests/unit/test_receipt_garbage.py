"""Whatever a stranger posts, the receipt parsers answer with receipts or one
of the errors of adapters/receipts/common.py: never a KeyError, TypeError or
ValueError an endpoint would turn into a 500."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from integration_hub.adapters.receipts import ses, sns, twilio
from integration_hub.adapters.receipts.common import MalformedReceipt, ReceiptRejected

NOW = datetime(2026, 1, 1, tzinfo=UTC)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=20,
)
ses_keys = st.sampled_from(
    ["eventType", "notificationType", "mail", "bounce", "complaint", "delivery", "reject"]
)


@given(st.dictionaries(ses_keys, json_values, max_size=5))
def test_any_ses_shaped_json_is_receipts_or_malformed(event: dict[str, object]) -> None:
    with contextlib.suppress(MalformedReceipt):
        ses.parse_event("acme", json.dumps(event), NOW)


@given(
    st.sampled_from(["Delivery", "Bounce", "Complaint", "Reject", "DeliveryDelay"]),
    json_values,
    json_values,
)
def test_any_section_of_a_known_ses_event_is_receipts_or_malformed(
    kind: str, mail: object, section: object
) -> None:
    key = {"DeliveryDelay": "deliveryDelay"}.get(kind, kind.lower())
    for body in (
        {"eventType": kind, "mail": mail, key: section},
        {"eventType": kind, "mail": {"messageId": "m"}, key: section},
    ):
        with contextlib.suppress(MalformedReceipt):
            ses.parse_event("acme", json.dumps(body), NOW)


sns_keys = st.sampled_from(
    ["Type", "Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Token", "SubscribeURL"]
)


@given(st.dictionaries(sns_keys, json_values, max_size=8))
def test_any_sns_shaped_json_has_a_string_to_sign_or_is_malformed(
    message: dict[str, object],
) -> None:
    with contextlib.suppress(MalformedReceipt):
        assert isinstance(sns.string_to_sign(message), bytes)


@given(st.text(max_size=300))
def test_any_text_is_an_sns_url_or_untrusted(url: str) -> None:
    with contextlib.suppress(ReceiptRejected):
        assert sns.check_sns_url(url, "SigningCertURL", pem=True) == url


twilio_keys = st.sampled_from(["MessageSid", "SmsSid", "MessageStatus", "ErrorCode", "To"])


@given(st.dictionaries(twilio_keys, st.text(max_size=20), max_size=5))
def test_any_twilio_form_is_receipts_or_malformed(params: dict[str, str]) -> None:
    with contextlib.suppress(MalformedReceipt):
        twilio.parse_status("acme", params, NOW)


@given(st.text(max_size=50))
def test_any_inbound_text_is_a_keyword_or_none(body: str) -> None:
    assert twilio.inbound_keyword(body) in {None, *twilio.OptAction}
