"""VonageProvider against a local Vonage SMS API over real HTTP."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import quote_plus

import pytest
from pydantic import SecretStr, ValidationError
from typer.testing import CliRunner

from callback_hubs import LoopThread
from integration_hub.adapters.providers import registry
from integration_hub.adapters.providers.http import HttpOptions
from integration_hub.adapters.providers.vonage import (
    VonageProvider,
    VonageSettings,
    is_gsm,
    signature,
)
from integration_hub.domain.delivery import (
    Delivered,
    DeliveryResult,
    PermanentFailure,
    TransientFailure,
)
from integration_hub.domain.errors import ProviderNotConfigured
from integration_hub.domain.models import Outcome, Recipient
from integration_hub.domain.outbound import OutboundPolicy
from integration_hub.domain.routing import Channel
from integration_hub.entrypoints import cli
from support import LOCAL_OUTBOUND

from .fake_dns import dns
from .fake_http import unused_port
from .fake_vonage import FakeVonage
from .messages import outbound, sms

# Short timeouts only where a slow answer is the point (see test_twilio.py).
FAST = HttpOptions(total_timeout=0.5, connect_timeout=0.5, pool_limit=8)
ROOMY = HttpOptions(total_timeout=10, connect_timeout=10, pool_limit=8)
PATIENT = HttpOptions(total_timeout=30, connect_timeout=30, pool_limit=8)


@pytest.fixture
async def vonage() -> AsyncIterator[FakeVonage]:
    async with FakeVonage() as fake:
        yield fake


def settings_for(fake: FakeVonage, **overrides: object) -> VonageSettings:
    return VonageSettings.model_validate(fake.credentials(**overrides))


def signed_settings(fake: FakeVonage, method: str = "md5hash") -> VonageSettings:
    return settings_for(
        fake,
        api_secret=None,
        signature_secret=fake.signature_secret,
        signature_method=method,
    )


@pytest.fixture
async def provider(vonage: FakeVonage) -> AsyncIterator[VonageProvider]:
    adapter = VonageProvider(settings_for(vonage), options=ROOMY, outbound=LOCAL_OUTBOUND)
    yield adapter
    await adapter.close()


async def send_with(
    settings: VonageSettings, phone: str = "+15551234567", body: str = "Your code is 123456"
) -> DeliveryResult:
    adapter = VonageProvider(settings, options=ROOMY, outbound=LOCAL_OUTBOUND)
    try:
        return await adapter.send(sms(phone, body))
    finally:
        await adapter.close()


# -- sending ------------------------------------------------------------------


async def test_vonage_delivers_and_returns_the_message_id(
    vonage: FakeVonage, provider: VonageProvider
) -> None:
    message = sms("+447700900123", "Your code is 123456")
    result = await provider.send(message)

    assert isinstance(result, Delivered)
    assert result.provider_message_id == vonage.messages[0]["message-ids"][0]
    request = vonage.requests[0]
    assert (request.method, request.path) == ("POST", "/sms/json")
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.form == {
        "api_key": vonage.api_key,
        "api_secret": vonage.api_secret,
        "from": vonage.sender,
        "to": "447700900123",  # E.164 without the '+'
        "text": "Your code is 123456",
        "client-ref": message.notification_id,
    }


async def test_vonage_sender_given_with_a_plus_is_sent_without_it(vonage: FakeVonage) -> None:
    result = await send_with(settings_for(vonage, sender="+" + vonage.sender))
    assert isinstance(result, Delivered)
    assert vonage.requests[0].form["from"] == vonage.sender


async def test_vonage_alphanumeric_sender_is_sent_as_is(vonage: FakeVonage) -> None:
    result = await send_with(settings_for(vonage, sender="Acme Inc"))
    assert isinstance(result, Delivered)
    assert vonage.messages[0]["from"] == "Acme Inc"


@pytest.mark.parametrize(
    ("text", "unicode"),
    [
        ("Grüße & Ñoño: 50% + 1 = ¿ok? a=b;c\nline two", False),
        ("Hola & adiós", True),  # ó is not in GSM 03.38 (ò is)
        ("Price: 10€ [promo] {x} ~ ^ | \\", False),  # the GSM extension table
        ("Ваш код 123456", True),
        ("Done 🎉", True),
        ("ç is not in GSM, Ç is", True),
    ],
)
async def test_vonage_sets_type_unicode_only_for_text_outside_gsm(
    vonage: FakeVonage, provider: VonageProvider, text: str, unicode: bool
) -> None:
    result = await provider.send(sms(body=text))

    assert isinstance(result, Delivered)
    form = vonage.requests[0].form
    assert form["text"] == text
    assert ("type" in form) is unicode
    assert vonage.messages[0]["type"] == ("unicode" if unicode else "text")
    assert b"Content-Disposition" not in vonage.requests[0].body


def test_is_gsm_follows_the_gsm_alphabet() -> None:
    assert is_gsm("@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ!\"#¤%&'()*+,-./:;<=>?¡ÄÖÑÜ§¿äöñüà")
    assert is_gsm("€[]{}|~^\\")
    assert not is_gsm("á")  # Spanish á is not in GSM 03.38 (à is)
    assert not is_gsm("`")


async def test_vonage_long_text_in_several_parts_is_delivered_as_the_first_part(
    vonage: FakeVonage, provider: VonageProvider
) -> None:
    result = await provider.send(sms(body="x" * 400))

    assert isinstance(result, Delivered)
    ids = vonage.messages[0]["message-ids"]
    assert len(ids) == 3
    assert result.provider_message_id == ids[0]


async def test_vonage_sends_the_callback_when_configured(vonage: FakeVonage) -> None:
    hook = "https://hooks.example.com/vonage/dlr"
    result = await send_with(settings_for(vonage, callback=hook))
    assert isinstance(result, Delivered)
    assert vonage.messages[0]["callback"] == hook


async def test_vonage_built_by_the_registry_from_its_config_sends_and_checks(
    vonage: FakeVonage,
) -> None:
    port = registry.build("vonage", vonage.credentials(), LOCAL_OUTBOUND)
    try:
        assert isinstance(port, VonageProvider)
        assert port.name == "vonage"
        sent = await port.send(sms(body="Built from its configuration"))
        check = await port.check()
    finally:
        await port.close()
    assert isinstance(sent, Delivered)
    assert vonage.messages[0]["text"] == "Built from its configuration"
    assert check.ok, check.detail


# -- signatures ---------------------------------------------------------------


@pytest.mark.parametrize("method", ["md5hash", "md5", "sha1", "sha256", "sha512"])
async def test_vonage_signed_requests_are_accepted_and_carry_no_api_secret(method: str) -> None:
    async with FakeVonage(signature_method=method) as vonage:
        result = await send_with(signed_settings(vonage, method), body="a=b&c=d")

    assert isinstance(result, Delivered)
    form = vonage.requests[0].form
    assert "api_secret" not in form
    assert form["api_key"] == vonage.api_key
    assert abs(int(form["timestamp"]) - time.time()) < 60
    assert len(form["sig"]) == {"sha1": 40, "sha256": 64, "sha512": 128}.get(method, 32)


def test_md5hash_signature_is_the_md5_of_the_sorted_parameters_and_the_secret() -> None:
    params = {"to": "447700900000", "api_key": "abcd1234", "text": "a=b&c", "timestamp": "1"}
    expected = hashlib.md5(  # noqa: S324 - Vonage's documented scheme
        b"&api_key=abcd1234&text=a_b_c&timestamp=1&to=447700900000" + b"s3cret"
    ).hexdigest()
    assert signature(params, "s3cret", "md5hash") == expected
    assert signature({**params, "sig": "ignored"}, "s3cret", "md5hash") == expected


async def test_vonage_signature_with_the_wrong_secret_is_configuration(
    vonage: FakeVonage,
) -> None:
    settings = settings_for(vonage, api_secret=None, signature_secret="not-the-signature-secret")
    result = await send_with(settings)

    assert isinstance(result, PermanentFailure)
    assert (result.code, result.error_class, result.outcome) == (
        "14",
        "invalid_signature",
        Outcome.CONFIGURATION,
    )
    assert "not-the-signature-secret" not in result.message


async def test_vonage_signature_method_other_than_the_accounts_is_refused() -> None:
    async with FakeVonage(signature_method="sha256") as vonage:
        result = await send_with(signed_settings(vonage, "md5hash"))
    assert isinstance(result, PermanentFailure)
    assert (result.code, result.configuration) == ("14", True)


async def test_vonage_signature_with_a_stale_timestamp_is_refused(vonage: FakeVonage) -> None:
    adapter = VonageProvider(
        signed_settings(vonage),
        options=ROOMY,
        outbound=LOCAL_OUTBOUND,
        clock=lambda: time.time() - 3600,
    )
    try:
        result = await adapter.send(sms())
    finally:
        await adapter.close()
    assert isinstance(result, PermanentFailure)
    assert (result.code, result.error_class) == ("14", "invalid_signature")


async def test_vonage_with_both_secrets_signs_the_message(vonage: FakeVonage) -> None:
    settings = settings_for(vonage, signature_secret=vonage.signature_secret)
    result = await send_with(settings)
    assert isinstance(result, Delivered)
    assert "sig" in vonage.requests[0].form
    assert "api_secret" not in vonage.requests[0].form


# -- errors -------------------------------------------------------------------


async def test_vonage_wrong_api_secret_is_configuration(vonage: FakeVonage) -> None:
    result = await send_with(settings_for(vonage, api_secret="not-the-secret"))

    assert isinstance(result, PermanentFailure)
    assert (result.code, result.error_class, result.outcome) == (
        "4",
        "authentication",
        Outcome.CONFIGURATION,
    )
    assert result.message == "vonage status 4: Bad Credentials"


@pytest.mark.parametrize(
    ("status", "text", "error_class"),
    [
        (1, "Throttled", "rate_limited"),
        (5, "Internal Error", "provider_error"),
        (10, "Too many existing binds", "too_many_binds"),
    ],
)
async def test_vonage_transient_statuses(
    vonage: FakeVonage, provider: VonageProvider, status: int, text: str, error_class: str
) -> None:
    vonage.queue_status(status, text)

    result = await provider.send(sms())

    assert isinstance(result, TransientFailure)
    assert (result.code, result.error_class) == (str(status), error_class)
    assert text in result.message


@pytest.mark.parametrize(
    ("status", "text", "error_class"),
    [
        (6, "Invalid Message", "invalid_message"),
        (7, "Number barred.", "number_barred"),
        (12, "Message too long", "message_too_long"),
        (22, "Invalid Network Code", "invalid_network_code"),
        (33, "Number De-activated", "number_deactivated"),
    ],
)
async def test_vonage_recipient_and_message_statuses_are_permanent(
    vonage: FakeVonage, provider: VonageProvider, status: int, text: str, error_class: str
) -> None:
    vonage.queue_status(status, text)

    result = await provider.send(sms())

    assert isinstance(result, PermanentFailure)
    assert (result.code, result.error_class, result.outcome) == (
        str(status),
        error_class,
        Outcome.PERMANENT,
    )


@pytest.mark.parametrize(
    ("status", "text", "error_class"),
    [
        (2, "Missing from param", "missing_parameters"),
        (3, "Invalid from param", "invalid_parameters"),
        (4, "Bad Credentials", "authentication"),
        (8, "Partner Account Barred", "account_barred"),
        (9, "Quota Exceeded - rejected", "insufficient_balance"),
        (11, "Account not enabled for HTTP", "http_not_enabled"),
        (14, "Invalid Signature", "invalid_signature"),
        (15, "Illegal Sender Address - rejected", "invalid_sender"),
        (23, "Invalid Callback Url", "invalid_callback"),
        (29, "Non White-listed Destination - rejected", "destination_not_whitelisted"),
        (32, "Signature and API secret disallowed", "signature_and_secret"),
    ],
)
async def test_vonage_account_and_request_statuses_are_configuration(
    vonage: FakeVonage, provider: VonageProvider, status: int, text: str, error_class: str
) -> None:
    vonage.queue_status(status, text)

    result = await provider.send(sms())

    assert isinstance(result, PermanentFailure)
    assert (result.code, result.error_class, result.outcome) == (
        str(status),
        error_class,
        Outcome.CONFIGURATION,
    )


async def test_vonage_invalid_to_rejected_by_the_api_is_permanent(
    provider: VonageProvider,
) -> None:
    # Valid E.164 for the hub, too short for Vonage: the fake answers status 3.
    result = await provider.send(sms("+4477"))

    assert isinstance(result, PermanentFailure)
    assert (result.code, result.error_class, result.outcome) == (
        "3",
        "invalid_to",
        Outcome.PERMANENT,
    )
    assert result.message == "vonage status 3: Invalid to address"


@pytest.mark.parametrize(
    ("text", "about_to"),
    [
        ("Invalid to address", True),
        ("Invalid To Number", True),
        ("Invalid value for parameter: to", True),
        ("Invalid 'to' param", True),
        ("Invalid from param", False),
        ("Unable to parse the callback", False),
        ("Invalid client-ref param", False),
        ("Invalid parameter: status-report-req", False),
    ],
)
async def test_vonage_status_3_is_permanent_only_when_it_names_to(
    vonage: FakeVonage, provider: VonageProvider, text: str, about_to: bool
) -> None:
    vonage.queue_status(3, text)

    result = await provider.send(sms())

    assert isinstance(result, PermanentFailure)
    assert result.configuration is not about_to
    assert result.error_class == ("invalid_to" if about_to else "invalid_parameters")


async def test_vonage_numeric_sender_not_owned_is_configuration(vonage: FakeVonage) -> None:
    result = await send_with(settings_for(vonage, sender="447700900999"))
    assert isinstance(result, PermanentFailure)
    assert (result.code, result.error_class, result.configuration) == (
        "15",
        "invalid_sender",
        True,
    )


async def test_vonage_demo_account_outside_its_whitelist_is_configuration() -> None:
    async with FakeVonage(whitelist={"447700900123"}) as vonage:
        allowed = await send_with(settings_for(vonage), phone="+447700900123")
        refused = await send_with(settings_for(vonage), phone="+447700900456")
    assert isinstance(allowed, Delivered)
    assert isinstance(refused, PermanentFailure)
    assert (refused.code, refused.outcome) == ("29", Outcome.CONFIGURATION)


async def test_vonage_one_failed_part_fails_the_message(
    vonage: FakeVonage, provider: VonageProvider
) -> None:
    vonage.queue_status(1, "Throttled", accepted_parts=1)

    result = await provider.send(sms(body="x" * 200))

    assert isinstance(result, TransientFailure)
    assert (result.code, result.error_class) == ("1", "rate_limited")


async def test_vonage_undocumented_status_in_http_200_is_transient(
    vonage: FakeVonage, provider: VonageProvider
) -> None:
    vonage.queue_status(99, "Something new")

    result = await provider.send(sms())

    assert isinstance(result, TransientFailure)
    assert (result.code, result.error_class) == ("99", "unknown_status")
    assert "Something new" in result.message


async def test_vonage_status_0_without_a_message_id_is_transient(
    vonage: FakeVonage, provider: VonageProvider
) -> None:
    vonage.queue_response(200, {"message-count": "1", "messages": [{"status": "0"}]})

    result = await provider.send(sms())

    assert isinstance(result, TransientFailure)
    assert result.error_class == "unexpected_response"


async def test_vonage_http_200_that_is_not_json_is_transient(
    vonage: FakeVonage, provider: VonageProvider
) -> None:
    vonage.queue_response(200, "<html>captive portal</html>")

    result = await provider.send(sms())

    assert isinstance(result, TransientFailure)
    assert "captive portal" not in result.message
    assert "captive portal" in (result.provider_response or "")


async def test_vonage_http_429_is_transient_and_honours_retry_after(
    vonage: FakeVonage, provider: VonageProvider
) -> None:
    vonage.queue_response(429, "Too Many Requests", headers={"Retry-After": "7"})

    result = await provider.send(sms())

    assert isinstance(result, TransientFailure)
    assert (result.code, result.error_class, result.retry_after) == ("429", "rate_limited", 7.0)


async def test_vonage_5xx_with_an_html_body_is_transient(
    vonage: FakeVonage, provider: VonageProvider
) -> None:
    vonage.queue_response(503, "<html><body>Service Unavailable</body></html>")

    result = await provider.send(sms())

    assert isinstance(result, TransientFailure)
    assert (result.code, result.error_class) == ("503", "provider_error")
    assert result.message == "vonage HTTP 503"
    assert "Service Unavailable" in (result.provider_response or "")


async def test_vonage_http_401_is_configuration(
    vonage: FakeVonage, provider: VonageProvider
) -> None:
    vonage.queue_response(401, "")

    result = await provider.send(sms())

    assert isinstance(result, PermanentFailure)
    assert (result.code, result.outcome) == ("401", Outcome.CONFIGURATION)


async def test_vonage_slow_answer_is_a_transient_timeout(vonage: FakeVonage) -> None:
    vonage.queue_delay(3.0)
    adapter = VonageProvider(settings_for(vonage), options=FAST, outbound=LOCAL_OUTBOUND)
    try:
        result = await adapter.send(sms())
    finally:
        await adapter.close()

    assert isinstance(result, TransientFailure)
    assert result.error_class == "timeout"
    assert vonage.messages == []


async def test_vonage_connection_refused_is_transient() -> None:
    settings = VonageSettings(
        api_key="abcd1234",
        api_secret=SecretStr("some-secret"),
        sender="447700900000",
        base_url=f"http://127.0.0.1:{unused_port()}",
    )
    result = await send_with(settings)

    assert isinstance(result, TransientFailure)
    assert result.error_class == "connection_error"
    assert "some-secret" not in result.message


async def test_vonage_recipient_without_a_phone_is_permanent_and_unsent(
    vonage: FakeVonage, provider: VonageProvider
) -> None:
    message = outbound(Channel.SMS, Recipient(email="ana@example.org"), body="Hi", country="GB")
    result = await provider.send(message)
    assert isinstance(result, PermanentFailure)
    assert result.error_class == "invalid_recipient"
    assert vonage.requests == []


# -- secrets ------------------------------------------------------------------


async def test_vonage_secrets_never_appear_in_failures_or_repr(vonage: FakeVonage) -> None:
    secret = "sec+ret/with&odd=chars"
    signing = vonage.signature_secret
    # A provider that echoes what it was sent must not leak it through us.
    vonage.queue_status(6, f"bad request api_secret={secret} {quote_plus(secret)} {signing}")
    settings = settings_for(vonage, api_secret=secret, signature_secret=signing)
    adapter = VonageProvider(settings, options=ROOMY, outbound=LOCAL_OUTBOUND)
    try:
        result = await adapter.send(sms())
    finally:
        await adapter.close()

    assert isinstance(result, PermanentFailure)
    for leaked in (secret, quote_plus(secret), signing):
        assert leaked not in result.message
        assert leaked not in (result.provider_response or "")
        assert leaked not in repr(adapter)
        assert leaked not in repr(adapter.settings)
        assert leaked not in str(adapter.settings.model_dump())
    assert "***" in result.message


async def test_vonage_documented_text_is_bounded_and_sanitised(
    vonage: FakeVonage, provider: VonageProvider
) -> None:
    vonage.queue_status(7, "barred\x1b[31m\r\n\u202e" + "x" * 5000)

    result = await provider.send(sms())

    assert isinstance(result, PermanentFailure)
    assert result.message.startswith("vonage status 7: barred [31m")
    assert len(result.message) <= 240
    assert not any(ord(c) < 32 or c == "\u202e" for c in result.message)


# -- check --------------------------------------------------------------------


async def test_vonage_check_reads_the_balance_without_sending(
    vonage: FakeVonage, provider: VonageProvider
) -> None:
    result = await provider.check()

    assert result.ok, result.detail
    assert "balance 15.54 EUR" in result.detail
    assert vonage.api_secret not in result.detail
    assert vonage.messages == []
    request = vonage.requests[0]
    assert (request.method, request.path) == ("GET", "/account/get-balance")
    assert request.query == {"api_key": vonage.api_key, "api_secret": vonage.api_secret}


async def test_vonage_check_with_a_wrong_secret_is_a_configuration_problem(
    vonage: FakeVonage,
) -> None:
    adapter = VonageProvider(
        settings_for(vonage, api_secret="not-the-secret"), options=ROOMY, outbound=LOCAL_OUTBOUND
    )
    try:
        result = await adapter.check()
    finally:
        await adapter.close()
    assert not result.ok
    assert result.detail.startswith("configuration")
    assert "authentication failed" in result.detail
    assert "not-the-secret" not in result.detail


async def test_vonage_check_of_an_answer_that_is_not_a_balance_fails(
    vonage: FakeVonage, provider: VonageProvider
) -> None:
    vonage.queue_response(200, {"hello": "world"})
    result = await provider.check()
    assert not result.ok
    assert result.detail.startswith("transient")


async def test_vonage_check_without_an_api_secret_fails_unsent(vonage: FakeVonage) -> None:
    adapter = VonageProvider(signed_settings(vonage), options=ROOMY, outbound=LOCAL_OUTBOUND)
    try:
        result = await adapter.check()
    finally:
        await adapter.close()
    assert not result.ok
    assert "needs api_secret" in result.detail
    assert vonage.requests == []


# -- settings and the outbound rule -------------------------------------------


def test_vonage_settings_need_a_secret_and_a_valid_sender() -> None:
    with pytest.raises(ValidationError, match="api_secret or signature_secret"):
        VonageSettings(api_key="abcd1234", sender="447700900000")
    for sender in ("", "12", "Acme-Inc", "ThisIsTooLongForASender", "+44 7700"):
        with pytest.raises(ValidationError, match="sender"):
            VonageSettings(api_key="k", api_secret=SecretStr("s"), sender=sender)
    with pytest.raises(ValidationError, match="callback"):
        VonageSettings(
            api_key="k",
            api_secret=SecretStr("s"),
            sender="Acme",
            callback="https://example.com/" + "x" * 100,
        )
    with pytest.raises(ValidationError, match="signature_method"):
        VonageSettings.model_validate(
            {"api_key": "k", "signature_secret": "s", "sender": "Acme", "signature_method": "crc"}
        )
    with pytest.raises(ValidationError, match="Extra inputs"):
        VonageSettings.model_validate(
            {"api_key": "k", "api_secret": "s", "sender": "Acme", "from": "Acme"}
        )


@pytest.mark.parametrize(
    "addresses", [["127.0.0.1"], ["93.184.215.14", "127.0.0.1"]], ids=["loopback", "one-of-two"]
)
async def test_vonage_refuses_a_name_that_resolves_to_an_internal_address(
    vonage: FakeVonage, monkeypatch: pytest.MonkeyPatch, addresses: list[str]
) -> None:
    dns(monkeypatch, {"sms.example.test": addresses})
    base_url = vonage.base_url.replace("127.0.0.1", "sms.example.test")
    adapter = VonageProvider(
        settings_for(vonage, base_url=base_url),
        options=PATIENT,
        outbound=OutboundPolicy(allow_http=True),
    )
    try:
        result = await adapter.send(sms())
        check = await adapter.check()
    finally:
        await adapter.close()

    assert isinstance(result, PermanentFailure)
    assert (result.outcome, result.error_class) == (Outcome.CONFIGURATION, "outbound_refused")
    assert "address 127.0.0.1 of sms.example.test is loopback" in result.message
    assert not check.ok
    assert vonage.requests == []


async def test_vonage_reaches_the_same_name_when_its_network_is_allowed(
    vonage: FakeVonage, monkeypatch: pytest.MonkeyPatch
) -> None:
    dns(monkeypatch, {"sms.example.test": ["127.0.0.1"]})
    base_url = vonage.base_url.replace("127.0.0.1", "sms.example.test")
    result = await send_with(settings_for(vonage, base_url=base_url))
    assert isinstance(result, Delivered)
    assert len(vonage.requests) == 1


async def test_vonage_refuses_an_internal_base_url_without_sending(vonage: FakeVonage) -> None:
    adapter = VonageProvider(
        settings_for(vonage), options=PATIENT, outbound=OutboundPolicy(allow_http=True)
    )
    try:
        result = await adapter.send(sms())
        check = await adapter.check()
    finally:
        await adapter.close()
    assert isinstance(result, PermanentFailure)
    assert result.outcome is Outcome.CONFIGURATION
    assert "address 127.0.0.1 is loopback" in result.message
    assert not check.ok
    assert vonage.requests == []


@pytest.mark.parametrize("field", ["base_url", "callback"])
def test_the_registry_refuses_internal_vonage_urls_naming_the_field(field: str) -> None:
    config = {
        "api_key": "abcd1234",
        "api_secret": "s3cret-value",
        "sender": "Acme",
        field: "https://169.254.169.254/latest",
    }
    with pytest.raises(ProviderNotConfigured, match=f"^{field}: ") as raised:
        registry.build("vonage", config, OutboundPolicy())
    assert "s3cret-value" not in raised.value.message


# -- ihub providers check -------------------------------------------------------


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.stop()


def test_ihub_providers_check_proves_vonage_credentials(loop: LoopThread, tmp_path: Path) -> None:
    vonage = FakeVonage()
    loop.run(vonage.start())
    try:
        url = f"sqlite:///{tmp_path / 'hub.db'}"
        runner = CliRunner()

        def ihub(*args: str) -> tuple[int, str]:
            done = runner.invoke(cli.app, [*args, "--database", url])
            return done.exit_code, done.output

        assert ihub("tenants", "create", "acme")[0] == 0
        good = tmp_path / "vonage.json"
        good.write_text(json.dumps(vonage.credentials()))
        code, out = ihub("tenants", "set-credentials", "acme", "vonage", "--from-file", str(good))
        assert code == 0, out
        assert vonage.api_secret not in out
        code, out = ihub("tenants", "set-provider", "acme", "sms", "vonage")
        assert code == 0, out

        code, out = ihub("providers", "check", "--tenant", "acme")
        assert code == 0, out
        assert "vonage" in out
        assert "balance 15.54 EUR" in out

        good.write_text(json.dumps(vonage.credentials(api_secret="not-the-secret")))
        code, out = ihub("tenants", "set-credentials", "acme", "vonage", "--from-file", str(good))
        assert code == 0, out
        code, out = ihub("providers", "check", "--tenant", "acme")
        assert code == 1, out
        assert "failing" in out
        assert "not-the-secret" not in out
    finally:
        loop.run(vonage.stop())
    assert vonage.messages == []
    assert [r.path for r in vonage.requests] == ["/account/get-balance"] * 2
