"""Recipients, notification requests and the recipient-channel check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from integration_hub.domain.errors import HubError, InvalidRecipient
from integration_hub.domain.models import (
    Notification,
    NotificationRequest,
    Recipient,
    check_recipient,
    from_epoch,
)
from integration_hub.domain.routing import Channel
from integration_hub.domain.status import Status


def _error_locations(error: ValidationError) -> list[tuple[int | str, ...]]:
    return [tuple(e["loc"]) for e in error.errors()]


# --- Recipient.phone -------------------------------------------------------


@pytest.mark.parametrize(
    "phone",
    [
        "+34600111222",
        "+12025550123",
        "+5215512345678",
        "+12",  # shortest E.164 the model allows: + and 2 digits
        "+123456789012345",  # longest: 15 digits
    ],
)
def test_an_e164_phone_is_accepted(phone: str) -> None:
    assert Recipient(phone=phone).phone == phone


@pytest.mark.parametrize(
    "phone",
    [
        pytest.param("34600111222", id="no-plus"),
        pytest.param("+0123", id="leading-zero"),
        pytest.param("+1 202 555", id="spaces"),
        pytest.param("+1234567890123456", id="16-digits"),
        pytest.param("+34-600-111-222", id="dashes"),
        pytest.param("+1", id="one-digit"),
        pytest.param("+", id="plus-only"),
        pytest.param("", id="empty"),
        pytest.param("+34600a11222", id="letter"),
        pytest.param("++34600111222", id="double-plus"),
    ],
)
def test_a_phone_that_is_not_e164_is_refused(phone: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Recipient(phone=phone)
    assert _error_locations(caught.value) == [("phone",)]


def test_surrounding_whitespace_is_stripped_from_a_phone() -> None:
    assert Recipient(phone="  +34600111222\n").phone == "+34600111222"


# --- Recipient.email -------------------------------------------------------


@pytest.mark.parametrize(
    "email",
    ["ana@example.com", "a.b+tag@mail.example.co.uk", "x@y.io", "o'neil@example.ie"],
)
def test_a_plausible_email_is_accepted(email: str) -> None:
    assert Recipient(email=email).email == email


@pytest.mark.parametrize(
    "email",
    [
        pytest.param("ana", id="no-at"),
        pytest.param("ana@", id="no-domain"),
        pytest.param("@example.com", id="no-local-part"),
        pytest.param("ana@example", id="no-dot-in-domain"),
        pytest.param("ana@example.c", id="one-letter-tld"),
        pytest.param("ana @example.com", id="space"),
        pytest.param("ana@exa@mple.com", id="two-ats"),
        pytest.param("a" * 65 + "@example.com", id="local-part-over-64"),
        pytest.param("a@" + "b" * 250 + ".com", id="over-254"),
        pytest.param("", id="empty"),
    ],
)
def test_an_obviously_invalid_email_is_refused(email: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Recipient(email=email)
    assert _error_locations(caught.value) == [("email",)]


def test_surrounding_whitespace_is_stripped_from_an_email() -> None:
    assert Recipient(email=" ana@example.com ").email == "ana@example.com"


def test_a_recipient_refuses_unknown_fields() -> None:
    with pytest.raises(ValidationError):
        Recipient.model_validate({"email": "ana@example.com", "name": "Ana"})


def test_a_recipient_may_have_both_email_and_phone() -> None:
    recipient = Recipient(email="ana@example.com", phone="+34600111222")
    assert (recipient.email, recipient.phone) == ("ana@example.com", "+34600111222")


# --- check_recipient -------------------------------------------------------


def test_the_email_channel_accepts_a_recipient_with_an_email() -> None:
    check_recipient(Channel.EMAIL, Recipient(email="ana@example.com"))


@pytest.mark.parametrize(
    "recipient",
    [Recipient(phone="+34600111222"), Recipient()],
    ids=["phone-only", "empty"],
)
def test_the_email_channel_requires_recipient_email(recipient: Recipient) -> None:
    with pytest.raises(InvalidRecipient) as caught:
        check_recipient(Channel.EMAIL, recipient)
    assert caught.value.field == "recipient.email"
    assert "email" in caught.value.message


@pytest.mark.parametrize("channel", [Channel.SMS, Channel.WHATSAPP])
def test_phone_channels_accept_a_recipient_with_a_phone(channel: Channel) -> None:
    check_recipient(channel, Recipient(phone="+34600111222"))


@pytest.mark.parametrize("channel", [Channel.SMS, Channel.WHATSAPP])
@pytest.mark.parametrize(
    "recipient",
    [Recipient(email="ana@example.com"), Recipient()],
    ids=["email-only", "empty"],
)
def test_phone_channels_require_recipient_phone(channel: Channel, recipient: Recipient) -> None:
    with pytest.raises(InvalidRecipient) as caught:
        check_recipient(channel, recipient)
    assert caught.value.field == "recipient.phone"
    assert str(channel) in caught.value.message


def test_invalid_recipient_is_a_hub_error() -> None:
    with pytest.raises(HubError):
        check_recipient(Channel.SMS, Recipient())


# --- NotificationRequest ---------------------------------------------------

VALID: dict[str, Any] = {"recipient": {"email": "ana@example.com"}, "body": "hola"}


def test_a_minimal_request_is_accepted() -> None:
    request = NotificationRequest.model_validate(VALID)
    assert request.body == "hola"
    assert request.subject is None
    assert request.metadata is None


@pytest.mark.parametrize(
    ("payload", "location"),
    [
        pytest.param({**VALID, "priority": "high"}, ("priority",), id="top-level"),
        pytest.param(
            {**VALID, "recipient": {"email": "ana@example.com", "fax": "123"}},
            ("recipient", "fax"),
            id="in-recipient",
        ),
    ],
)
def test_a_request_rejects_unknown_fields(
    payload: dict[str, Any], location: tuple[str, ...]
) -> None:
    with pytest.raises(ValidationError) as caught:
        NotificationRequest.model_validate(payload)
    assert _error_locations(caught.value) == [location]


def test_a_request_rejects_an_empty_body() -> None:
    with pytest.raises(ValidationError) as caught:
        NotificationRequest.model_validate({**VALID, "body": ""})
    assert _error_locations(caught.value) == [("body",)]


@pytest.mark.parametrize("missing", ["body", "recipient"])
def test_a_request_requires_body_and_recipient(missing: str) -> None:
    payload = {k: v for k, v in VALID.items() if k != missing}
    with pytest.raises(ValidationError) as caught:
        NotificationRequest.model_validate(payload)
    assert _error_locations(caught.value) == [(missing,)]


def test_a_request_accepts_a_998_character_subject_and_refuses_a_longer_one() -> None:
    NotificationRequest.model_validate({**VALID, "subject": "s" * 998})
    with pytest.raises(ValidationError):
        NotificationRequest.model_validate({**VALID, "subject": "s" * 999})


@pytest.mark.parametrize(
    "subject",
    ["Hola\r\nBcc: victim@example.com", "line\nbreak", "tab\there", "nul\x00", "c1\x85"],
)
def test_a_subject_with_control_characters_is_refused_naming_the_subject(subject: str) -> None:
    with pytest.raises(ValidationError) as caught:
        NotificationRequest.model_validate({**VALID, "subject": subject})
    assert _error_locations(caught.value) == [("subject",)]


def test_a_subject_may_hold_any_printable_unicode() -> None:
    request = NotificationRequest.model_validate({**VALID, "subject": "Pedido nº 42 — ¡ya! 🚚"})
    assert request.subject == "Pedido nº 42 — ¡ya! 🚚"


def _metadata_of_size(size: int, char: str = "x") -> dict[str, str]:
    # {"k":"…"} is 8 bytes of JSON around the value.
    width = len(char.encode())
    assert (size - 8) % width == 0
    return {"k": char * ((size - 8) // width)}


def test_metadata_of_exactly_4096_bytes_is_accepted() -> None:
    request = NotificationRequest.model_validate({**VALID, "metadata": _metadata_of_size(4096)})
    assert request.metadata is not None


def test_metadata_over_4096_bytes_is_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        NotificationRequest.model_validate({**VALID, "metadata": _metadata_of_size(4097)})
    assert _error_locations(caught.value) == [("metadata",)]
    assert "4096" in str(caught.value)


def test_metadata_size_counts_utf8_bytes_not_characters() -> None:
    metadata = _metadata_of_size(4098, "é")  # 2045 characters, 4098 bytes
    assert len(str(metadata)) < 4096
    with pytest.raises(ValidationError):
        NotificationRequest.model_validate({**VALID, "metadata": metadata})


def test_metadata_size_ignores_insignificant_whitespace() -> None:
    # The limit applies to the canonical JSON, so spacing in the request is free.
    spaced = '{"recipient":{"email":"ana@example.com"},"body":"hola","metadata":{"k"  :  "%s"}}'
    request = NotificationRequest.model_validate_json(spaced % ("x" * 4088))
    assert request.metadata == {"k": "x" * 4088}


def test_metadata_must_be_a_json_object() -> None:
    with pytest.raises(ValidationError):
        NotificationRequest.model_validate({**VALID, "metadata": ["a", "b"]})


# --- Notification and helpers ---------------------------------------------


def test_from_epoch_gives_an_aware_utc_datetime() -> None:
    assert from_epoch(0) == datetime(1970, 1, 1, tzinfo=UTC)
    moment = from_epoch(1_700_000_000.5)
    assert moment.utcoffset() == timedelta(0)
    assert moment == datetime(2023, 11, 14, 22, 13, 20, 500000, tzinfo=UTC)


def _notification() -> Notification:
    now = from_epoch(1_700_000_000)
    return Notification(
        id="n1",
        tenant="acme",
        country="ES",
        channel=Channel.EMAIL,
        provider="sandbox",
        request=NotificationRequest.model_validate(VALID),
        idempotency_key="k1",
        created_at=now,
        updated_at=now,
    )


def test_a_new_notification_is_received_with_no_attempts() -> None:
    notification = _notification()
    assert notification.status is Status.RECEIVED
    assert notification.attempts_used == 0
    assert notification.attempt_count == 0
    assert notification.attempts == []
    assert notification.finished_at is None
    assert notification.claimed_by is None


def test_notifications_do_not_share_their_attempt_lists() -> None:
    first, second = _notification(), _notification()
    first.attempts.append(object())  # type: ignore[arg-type]
    assert second.attempts == []


def test_a_blank_body_is_refused() -> None:
    with pytest.raises(ValidationError, match="blank"):
        NotificationRequest.model_validate({"recipient": {"email": "a@example.com"}, "body": "  "})
