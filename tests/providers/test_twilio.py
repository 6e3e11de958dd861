"""TwilioProvider against a local Twilio API over real HTTP."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import aiohttp
import pytest
from pydantic import SecretStr

from integration_hub.adapters.providers import registry
from integration_hub.adapters.providers.http import HttpOptions, build_session, transport_failure
from integration_hub.adapters.providers.twilio import TwilioProvider, TwilioSettings
from integration_hub.domain.delivery import Delivered, PermanentFailure, TransientFailure
from integration_hub.domain.models import Outcome
from integration_hub.domain.outbound import OutboundPolicy
from support import LOCAL_OUTBOUND

from .fake_dns import dns
from .fake_http import unused_port
from .fake_twilio import FakeTwilio
from .messages import sms

# Only the slow-answer tests need a short timeout; every other test waits long
# enough that a loaded machine's scheduling stall never turns an answer into a
# timeout.
FAST = HttpOptions(total_timeout=0.5, connect_timeout=0.5, pool_limit=8)
ROOMY = HttpOptions(total_timeout=10, connect_timeout=10, pool_limit=8)
# For tests whose expected answer is a refusal before any connection: a timeout
# is never the right answer there, so it must not be short enough for a loaded
# machine's scheduling stall to reach it first.
PATIENT = HttpOptions(total_timeout=30, connect_timeout=30, pool_limit=8)


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio() as fake:
        yield fake


def settings_for(fake: FakeTwilio, **overrides: object) -> TwilioSettings:
    return TwilioSettings.model_validate(fake.credentials(**overrides))


@pytest.fixture
async def provider(twilio: FakeTwilio) -> AsyncIterator[TwilioProvider]:
    adapter = TwilioProvider(settings_for(twilio), options=ROOMY, outbound=LOCAL_OUTBOUND)
    yield adapter
    await adapter.close()


async def test_twilio_delivers_and_returns_the_message_sid(
    twilio: FakeTwilio, provider: TwilioProvider
) -> None:
    result = await provider.send(sms("+15551234567", "Your code is 123456"))

    assert isinstance(result, Delivered)
    assert result.provider_message_id == twilio.messages[0]["sid"]
    assert result.provider_message_id.startswith("SM")
    request = twilio.requests[0]
    assert request.path == f"/2010-04-01/Accounts/{twilio.account_sid}/Messages.json"
    assert request.form == {
        "To": "+15551234567",
        "From": twilio.from_number,
        "Body": "Your code is 123456",
    }
    expected = base64.b64encode(f"{twilio.account_sid}:{twilio.auth_token}".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {expected}"


async def test_twilio_body_is_one_urlencoded_form_with_any_characters_intact(
    twilio: FakeTwilio, provider: TwilioProvider
) -> None:
    text = "Hola & adiós: 50% + 1 = ¿sí? 🎉 a=b;c\nline two"
    result = await provider.send(sms("+15551234567", text))

    assert isinstance(result, Delivered)
    request = twilio.requests[0]
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.form["Body"] == text
    assert twilio.messages[0]["body"] == text
    # Pre-encoded: a plain form body, never multipart.
    assert b"Content-Disposition" not in request.body
    assert int(request.headers["Content-Length"]) == len(request.body)


async def test_twilio_built_by_the_registry_from_its_config_sends_and_checks(
    twilio: FakeTwilio,
) -> None:
    # As the hub builds it: by name, from the tenant's stored configuration.
    port = registry.build("twilio", twilio.credentials(), LOCAL_OUTBOUND)
    try:
        assert isinstance(port, TwilioProvider)
        assert port.name == "twilio"
        sent = await port.send(sms("+15551234567", "Built from its configuration"))
        check = await port.check()
    finally:
        await port.close()
    assert isinstance(sent, Delivered)
    assert sent.provider_message_id == twilio.messages[0]["sid"]
    assert twilio.messages[0]["body"] == "Built from its configuration"
    assert check.ok, check.detail


async def test_twilio_api_key_credentials_are_accepted(twilio: FakeTwilio) -> None:
    key_sid, key_secret = next(iter(twilio.api_keys.items()))
    settings = settings_for(twilio, auth_token=None, api_key_sid=key_sid, api_key_secret=key_secret)
    adapter = TwilioProvider(settings, options=ROOMY, outbound=LOCAL_OUTBOUND)
    try:
        result = await adapter.send(sms())
    finally:
        await adapter.close()

    assert isinstance(result, Delivered)
    user = base64.b64decode(twilio.requests[0].headers["Authorization"].split()[1]).decode()
    assert user.startswith(f"{key_sid}:")


async def test_twilio_messaging_service_sid_is_sent_when_configured(twilio: FakeTwilio) -> None:
    service = next(iter(twilio.messaging_services))
    settings = settings_for(twilio, from_number=None, messaging_service_sid=service)
    adapter = TwilioProvider(settings, options=ROOMY, outbound=LOCAL_OUTBOUND)
    try:
        result = await adapter.send(sms())
    finally:
        await adapter.close()

    assert isinstance(result, Delivered)
    assert twilio.requests[0].form["MessagingServiceSid"] == service
    assert "From" not in twilio.requests[0].form


async def test_twilio_invalid_to_number_rejected_by_the_api_is_permanent(
    provider: TwilioProvider,
) -> None:
    result = await provider.send(sms("+1555"))

    assert isinstance(result, PermanentFailure)
    assert (result.code, result.error_class, result.configuration) == ("21211", "invalid_to", False)
    assert "+1555" in result.message


async def test_twilio_wrong_auth_token_is_configuration(twilio: FakeTwilio) -> None:
    adapter = TwilioProvider(
        settings_for(twilio, auth_token="not-the-token"), options=ROOMY, outbound=LOCAL_OUTBOUND
    )
    try:
        result = await adapter.send(sms())
    finally:
        await adapter.close()

    assert isinstance(result, PermanentFailure)
    assert (result.code, result.configuration) == ("20003", True)
    assert result.outcome is Outcome.CONFIGURATION
    assert "not-the-token" not in result.message


async def test_twilio_unknown_account_in_the_path_is_configuration(twilio: FakeTwilio) -> None:
    key_sid, key_secret = next(iter(twilio.api_keys.items()))
    settings = settings_for(
        twilio,
        account_sid="AC" + "9" * 32,
        auth_token=None,
        api_key_sid=key_sid,
        api_key_secret=key_secret,
    )
    adapter = TwilioProvider(settings, options=ROOMY, outbound=LOCAL_OUTBOUND)
    try:
        result = await adapter.send(sms())
    finally:
        await adapter.close()

    assert isinstance(result, PermanentFailure)
    assert (result.code, result.error_class, result.configuration) == (
        "20404",
        "account_not_found",
        True,
    )


async def test_twilio_sender_not_owned_by_the_account_is_configuration(twilio: FakeTwilio) -> None:
    adapter = TwilioProvider(
        settings_for(twilio, from_number="+15550001111"), options=ROOMY, outbound=LOCAL_OUTBOUND
    )
    try:
        result = await adapter.send(sms())
    finally:
        await adapter.close()

    assert isinstance(result, PermanentFailure)
    assert (result.code, result.configuration) == ("21659", True)


async def test_twilio_21610_unsubscribed_is_permanent(
    twilio: FakeTwilio, provider: TwilioProvider
) -> None:
    twilio.queue_error(21610, message="Attempt to send to unsubscribed recipient")

    result = await provider.send(sms())

    assert isinstance(result, PermanentFailure)
    assert (result.code, result.error_class, result.configuration) == (
        "21610",
        "unsubscribed",
        False,
    )
    assert "unsubscribed recipient" in result.message


@pytest.mark.parametrize(
    ("code", "error_class"),
    [
        (21211, "invalid_to"),
        (21614, "not_mobile"),
        (21610, "unsubscribed"),
        (30003, "unreachable_handset"),
        (30005, "unknown_handset"),
        (30006, "landline_or_unreachable_carrier"),
    ],
)
async def test_twilio_recipient_errors_are_permanent(
    twilio: FakeTwilio, provider: TwilioProvider, code: int, error_class: str
) -> None:
    twilio.queue_error(code)

    result = await provider.send(sms())

    assert isinstance(result, PermanentFailure)
    assert (result.code, result.error_class, result.configuration) == (
        str(code),
        error_class,
        False,
    )


@pytest.mark.parametrize(
    ("code", "status", "error_class"),
    [
        (20003, 401, "authentication"),
        (20404, 404, "account_not_found"),
        (21212, 400, "invalid_from"),
        (21606, 400, "from_not_owned"),
        (21659, 400, "from_not_twilio_number"),
        (21408, 400, "region_not_enabled"),
    ],
)
async def test_twilio_account_and_sender_errors_are_configuration(
    twilio: FakeTwilio, provider: TwilioProvider, code: int, status: int, error_class: str
) -> None:
    twilio.queue_error(code, status=status)

    result = await provider.send(sms())

    assert isinstance(result, PermanentFailure)
    assert (result.code, result.error_class, result.configuration) == (str(code), error_class, True)
    assert result.outcome is Outcome.CONFIGURATION


async def test_twilio_429_is_transient_and_honours_retry_after_seconds(
    twilio: FakeTwilio, provider: TwilioProvider
) -> None:
    twilio.queue_error(20429, status=429, message="Too Many Requests", headers={"Retry-After": "7"})

    result = await provider.send(sms())

    assert isinstance(result, TransientFailure)
    assert (result.code, result.error_class, result.retry_after) == ("20429", "rate_limited", 7.0)


async def test_twilio_429_honours_retry_after_as_an_http_date(
    twilio: FakeTwilio, provider: TwilioProvider
) -> None:
    when = datetime.now(UTC) + timedelta(seconds=120)
    twilio.queue_error(
        20429, status=429, headers={"Retry-After": format_datetime(when, usegmt=True)}
    )

    result = await provider.send(sms())

    assert isinstance(result, TransientFailure)
    assert result.retry_after is not None
    assert 115 <= result.retry_after <= 120


async def test_twilio_20429_without_http_429_is_still_transient(
    twilio: FakeTwilio, provider: TwilioProvider
) -> None:
    twilio.queue_error(20429, status=400)

    result = await provider.send(sms())

    assert isinstance(result, TransientFailure)
    assert (result.code, result.retry_after) == ("20429", None)


async def test_twilio_5xx_with_an_html_body_is_transient(
    twilio: FakeTwilio, provider: TwilioProvider
) -> None:
    twilio.queue_response(503, "<html><body>Service Unavailable</body></html>")

    result = await provider.send(sms())

    assert isinstance(result, TransientFailure)
    assert (result.code, result.error_class) == ("503", "provider_error")
    # An undocumented body is for operators only, never in the tenant's message.
    assert result.message == "twilio HTTP 503"
    assert "Service Unavailable" in (result.provider_response or "")


async def test_twilio_5xx_with_malformed_json_is_transient(
    twilio: FakeTwilio, provider: TwilioProvider
) -> None:
    twilio.queue_response(
        500, '{"code": 20500, "message": "Internal', headers={"Content-Type": "application/json"}
    )

    result = await provider.send(sms())

    assert isinstance(result, TransientFailure)
    assert result.code == "500"


async def test_twilio_unknown_4xx_code_is_permanent(
    twilio: FakeTwilio, provider: TwilioProvider
) -> None:
    twilio.queue_error(21999, status=400, message="Something new")

    result = await provider.send(sms())

    assert isinstance(result, PermanentFailure)
    assert (result.code, result.configuration) == ("21999", False)


async def test_twilio_success_without_a_sid_is_transient_not_delivered(
    twilio: FakeTwilio, provider: TwilioProvider
) -> None:
    twilio.queue_response(201, {"status": "queued"})

    result = await provider.send(sms())

    assert isinstance(result, TransientFailure)
    assert result.error_class == "unexpected_response"


async def test_twilio_slow_answer_is_a_transient_timeout(twilio: FakeTwilio) -> None:
    twilio.queue_delay(3.0)

    adapter = TwilioProvider(settings_for(twilio), options=FAST, outbound=LOCAL_OUTBOUND)
    try:
        result = await adapter.send(sms())
    finally:
        await adapter.close()

    assert isinstance(result, TransientFailure)
    assert result.error_class == "timeout"
    assert twilio.messages == []


async def test_twilio_connection_refused_is_transient() -> None:
    settings = TwilioSettings(
        account_sid="AC" + "1" * 32,
        auth_token=SecretStr("some-token"),
        from_number="+15005550006",
        base_url=f"http://127.0.0.1:{unused_port()}",
    )
    adapter = TwilioProvider(settings, options=ROOMY, outbound=LOCAL_OUTBOUND)
    try:
        result = await adapter.send(sms())
    finally:
        await adapter.close()

    assert isinstance(result, TransientFailure)
    assert result.error_class == "connection_error"
    assert "some-token" not in result.message


async def test_twilio_credentials_never_appear_in_failures_or_repr(
    twilio: FakeTwilio, provider: TwilioProvider
) -> None:
    token = twilio.auth_token
    encoded = base64.b64encode(f"{twilio.account_sid}:{token}".encode()).decode()
    # A provider that echoes what it was sent must not leak it through us.
    twilio.queue_error(21211, message=f"bad request {token} (Authorization: Basic {encoded})")

    result = await provider.send(sms())

    assert isinstance(result, PermanentFailure)
    assert token not in result.message
    assert encoded not in result.message
    assert "***" in result.message
    assert token not in repr(provider)
    assert token not in repr(provider.settings)
    assert token not in str(provider.settings.model_dump())


async def test_twilio_close_leaves_an_injected_session_open(twilio: FakeTwilio) -> None:
    async with aiohttp.ClientSession() as session:
        adapter = TwilioProvider(settings_for(twilio), session=session, outbound=LOCAL_OUTBOUND)
        assert isinstance(await adapter.send(sms()), Delivered)
        await adapter.close()
        assert not session.closed
        assert isinstance(await adapter.send(sms()), Delivered)


async def test_twilio_settings_need_credentials_and_a_sender() -> None:
    with pytest.raises(ValueError, match="auth_token"):
        TwilioSettings(account_sid="AC1", from_number="+15005550006")
    with pytest.raises(ValueError, match="from_number or messaging_service_sid"):
        TwilioSettings(account_sid="AC1", auth_token=SecretStr("t"))
    with pytest.raises(ValueError, match="go together"):
        TwilioSettings(account_sid="AC1", api_key_sid="SK1", from_number="+15005550006")


async def test_twilio_check_reads_the_account_without_sending(
    twilio: FakeTwilio, provider: TwilioProvider
) -> None:
    result = await provider.check()
    assert result.ok, result.detail
    assert twilio.account_sid in result.detail
    assert twilio.messages == []
    assert twilio.requests[0].method == "GET"


async def test_twilio_check_with_a_wrong_token_is_a_configuration_problem(
    twilio: FakeTwilio,
) -> None:
    adapter = TwilioProvider(
        settings_for(twilio, auth_token="not-the-token"), options=ROOMY, outbound=LOCAL_OUTBOUND
    )
    result = await adapter.check()
    await adapter.close()
    assert not result.ok
    assert result.detail.startswith("configuration")
    assert "20003" in result.detail
    assert "not-the-token" not in result.detail


# -- the outbound rule (SSRF) and what a tenant may read back -----------------


@pytest.mark.parametrize(
    "addresses", [["127.0.0.1"], ["93.184.215.14", "127.0.0.1"]], ids=["loopback", "one-of-two"]
)
async def test_twilio_refuses_a_name_that_resolves_to_an_internal_address(
    twilio: FakeTwilio, monkeypatch: pytest.MonkeyPatch, addresses: list[str]
) -> None:
    # A public-looking name whose DNS answer points at this machine (where the
    # fake listens): the rule is applied after resolution, to every address.
    dns(monkeypatch, {"sms.example.test": addresses})
    base_url = twilio.base_url.replace("127.0.0.1", "sms.example.test")
    adapter = TwilioProvider(
        settings_for(twilio, base_url=base_url),
        options=PATIENT,
        outbound=OutboundPolicy(allow_http=True),
    )
    try:
        result = await adapter.send(sms())
    finally:
        await adapter.close()

    assert isinstance(result, PermanentFailure)
    assert (result.outcome, result.error_class) == (Outcome.CONFIGURATION, "outbound_refused")
    assert "address 127.0.0.1 of sms.example.test is loopback" in result.message
    assert "IHUB_PROVIDER_ALLOWED_NETWORKS" in result.message
    assert twilio.requests == []


async def test_twilio_reaches_the_same_name_when_its_network_is_allowed(
    twilio: FakeTwilio, monkeypatch: pytest.MonkeyPatch
) -> None:
    dns(monkeypatch, {"sms.example.test": ["127.0.0.1"]})
    base_url = twilio.base_url.replace("127.0.0.1", "sms.example.test")
    adapter = TwilioProvider(
        settings_for(twilio, base_url=base_url), options=ROOMY, outbound=LOCAL_OUTBOUND
    )
    try:
        result = await adapter.send(sms())
    finally:
        await adapter.close()
    assert isinstance(result, Delivered)
    assert len(twilio.requests) == 1


async def test_twilio_refuses_an_internal_base_url_without_sending(twilio: FakeTwilio) -> None:
    # Stored before the rule existed, say: the adapter refuses it unsent.
    adapter = TwilioProvider(
        settings_for(twilio), options=PATIENT, outbound=OutboundPolicy(allow_http=True)
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
    assert twilio.requests == []


async def test_a_guarded_session_refuses_a_literal_internal_address(twilio: FakeTwilio) -> None:
    # aiohttp does not resolve a literal address: the socket factory checks it.
    session = build_session(PATIENT, OutboundPolicy(allow_http=True))
    try:
        with pytest.raises(aiohttp.ClientConnectorError) as raised:
            await session.get(twilio.base_url + "/")
    finally:
        await session.close()
    result = transport_failure("twilio", raised.value)
    assert isinstance(result, PermanentFailure)
    assert (result.outcome, result.error_class) == (Outcome.CONFIGURATION, "outbound_refused")
    assert twilio.requests == []


async def test_twilio_never_shows_an_undocumented_body_to_the_tenant(
    twilio: FakeTwilio, provider: TwilioProvider
) -> None:
    twilio.queue_response(403, "INTERNAL-ONLY-DATA-42 db_password=s3cr3t")

    result = await provider.send(sms())

    assert isinstance(result, PermanentFailure)
    assert result.message == "twilio HTTP 403"
    assert "INTERNAL-ONLY-DATA-42 db_password=s3cr3t" in (result.provider_response or "")


async def test_twilio_documented_message_is_bounded_sanitised_and_redacted(
    twilio: FakeTwilio, provider: TwilioProvider
) -> None:
    noisy = "bad\x1b[31m number\r\n\u202e" + twilio.auth_token + " " + "x" * 5000
    twilio.queue_response(400, {"code": 21211, "message": noisy, "status": 400})

    result = await provider.send(sms())

    assert isinstance(result, PermanentFailure)
    assert result.code == "21211"
    assert result.message.startswith("twilio HTTP 400 code 21211: bad [31m number ***")
    assert len(result.message) <= 240
    assert not any(ord(c) < 32 or c == "\u202e" for c in result.message)
    assert twilio.auth_token not in result.message
    assert twilio.auth_token not in (result.provider_response or "")
