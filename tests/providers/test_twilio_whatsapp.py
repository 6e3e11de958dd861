"""TwilioWhatsAppProvider against a local Twilio Messages API for WhatsApp over real HTTP."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from integration_hub.adapters.providers import registry
from integration_hub.adapters.providers.http import HttpOptions
from integration_hub.adapters.providers.registry import Callbacks
from integration_hub.adapters.providers.twilio_whatsapp import (
    TwilioWhatsAppProvider,
    TwilioWhatsAppSettings,
)
from integration_hub.adapters.receipts import twilio as twilio_receipts
from integration_hub.domain.delivery import Delivered, PermanentFailure, TransientFailure
from integration_hub.domain.errors import ProviderNotConfigured
from integration_hub.domain.models import Outcome, Recipient
from integration_hub.domain.outbound import OutboundPolicy
from integration_hub.domain.receipts import DeliveryState
from integration_hub.domain.routing import Channel
from support import LOCAL_OUTBOUND

from .fake_callbacks import CallbackReceiver, Step
from .fake_dns import dns
from .fake_http import unused_port
from .fake_twilio_whatsapp import ORDER_SHIPPED, WELCOME, FakeTwilioWhatsApp
from .messages import outbound, whatsapp

FAST = HttpOptions(total_timeout=0.5, connect_timeout=0.5, pool_limit=8)
ROOMY = HttpOptions(total_timeout=10, connect_timeout=10, pool_limit=8)
PATIENT = HttpOptions(total_timeout=30, connect_timeout=30, pool_limit=8)
TO = "+5215512345678"


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilioWhatsApp]:
    async with FakeTwilioWhatsApp() as fake:
        fake.sessions.add(TO)  # the recipient wrote recently: free-form text is allowed
        yield fake


def settings_for(fake: FakeTwilioWhatsApp, **overrides: object) -> TwilioWhatsAppSettings:
    return TwilioWhatsAppSettings.model_validate(fake.credentials(**overrides))


@pytest.fixture
async def provider(twilio: FakeTwilioWhatsApp) -> AsyncIterator[TwilioWhatsAppProvider]:
    adapter = TwilioWhatsAppProvider(settings_for(twilio), options=ROOMY, outbound=LOCAL_OUTBOUND)
    yield adapter
    await adapter.close()


async def send_with(
    fake: FakeTwilioWhatsApp, options: HttpOptions = ROOMY, **overrides: object
) -> Any:
    adapter = TwilioWhatsAppProvider(
        settings_for(fake, **overrides), options=options, outbound=LOCAL_OUTBOUND
    )
    try:
        return await adapter.send(whatsapp(TO))
    finally:
        await adapter.close()


def template(**spec: object) -> dict[str, object]:
    return {"whatsapp": {"template": spec}}


# -- sending ------------------------------------------------------------------


async def test_free_form_text_goes_to_whatsapp_addresses_and_returns_the_sid(
    twilio: FakeTwilioWhatsApp, provider: TwilioWhatsAppProvider
) -> None:
    result = await provider.send(whatsapp(TO, "Your order shipped"))

    assert isinstance(result, Delivered)
    assert result.provider_message_id == twilio.messages[0]["sid"]
    request = twilio.requests[0]
    assert request.path == f"/2010-04-01/Accounts/{twilio.account_sid}/Messages.json"
    assert request.form == {
        "To": f"whatsapp:{TO}",
        "From": f"whatsapp:{twilio.whatsapp_sender}",
        "Body": "Your order shipped",
    }
    expected = base64.b64encode(f"{twilio.account_sid}:{twilio.auth_token}".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {expected}"


async def test_a_from_number_given_with_the_prefix_is_sent_once_prefixed(
    twilio: FakeTwilioWhatsApp,
) -> None:
    result = await send_with(twilio, from_number=f"whatsapp:{twilio.whatsapp_sender}")

    assert isinstance(result, Delivered)
    assert twilio.requests[0].form["From"] == f"whatsapp:{twilio.whatsapp_sender}"


async def test_a_content_sid_template_sends_content_sid_and_variables_without_a_body(
    twilio: FakeTwilioWhatsApp, provider: TwilioWhatsAppProvider
) -> None:
    spec = template(content_sid=ORDER_SHIPPED, variables={"1": "Ana", "2": 42})

    result = await provider.send(whatsapp(TO, "ignored for a template", metadata=spec))

    assert isinstance(result, Delivered)
    form = twilio.requests[0].form
    assert "Body" not in form
    assert form["ContentSid"] == ORDER_SHIPPED
    assert json.loads(form["ContentVariables"]) == {"1": "Ana", "2": "42"}


async def test_a_named_template_maps_to_its_content_sid_and_numbers_the_parameters(
    twilio: FakeTwilioWhatsApp, provider: TwilioWhatsAppProvider
) -> None:
    # The Cloud adapter's shape: name, language, parameters.
    spec = template(name="order_shipped", language="en_US", parameters=["Ana", "A-17"])

    result = await provider.send(whatsapp(TO, metadata=spec))

    assert isinstance(result, Delivered)
    form = twilio.requests[0].form
    assert form["ContentSid"] == ORDER_SHIPPED  # no "order_shipped:en_US": the name's entry
    assert json.loads(form["ContentVariables"]) == {"1": "Ana", "2": "A-17"}


async def test_a_name_and_language_entry_wins_and_no_variables_means_none_sent(
    twilio: FakeTwilioWhatsApp, provider: TwilioWhatsAppProvider
) -> None:
    result = await provider.send(whatsapp(TO, metadata=template(name="welcome", language="es_MX")))

    assert isinstance(result, Delivered)
    form = twilio.requests[0].form
    assert form["ContentSid"] == WELCOME
    assert "ContentVariables" not in form


async def test_a_template_name_without_a_content_sid_is_configuration_and_unsent(
    twilio: FakeTwilioWhatsApp, provider: TwilioWhatsAppProvider
) -> None:
    # "welcome" is mapped for es_MX only.
    result = await provider.send(whatsapp(TO, metadata=template(name="welcome", language="en")))

    assert isinstance(result, PermanentFailure)
    assert (result.error_class, result.outcome) == ("template_not_mapped", Outcome.CONFIGURATION)
    assert "content_sids" in result.message
    assert twilio.requests == []


@pytest.mark.parametrize(
    "spec",
    [
        "order_shipped",
        {},
        {"content_sid": "HX-not-a-sid"},
        {"name": ""},
        {"name": "order_shipped", "language": 7},
        {"name": "order_shipped", "parameters": [{"nested": "SECRET-VALUE"}]},
        {"name": "order_shipped", "parameters": "Ana"},
        {"content_sid": ORDER_SHIPPED, "variables": ["Ana"]},
        {"content_sid": ORDER_SHIPPED, "variables": {"1": None}},
        {"content_sid": ORDER_SHIPPED, "variables": {"1": "a"}, "parameters": ["a"]},
    ],
)
async def test_a_malformed_template_request_is_permanent_and_unsent(
    twilio: FakeTwilioWhatsApp, provider: TwilioWhatsAppProvider, spec: object
) -> None:
    result = await provider.send(whatsapp(TO, metadata={"whatsapp": {"template": spec}}))

    assert isinstance(result, PermanentFailure)
    assert (result.error_class, result.configuration) == ("invalid_template", False)
    assert "SECRET-VALUE" not in result.message
    assert twilio.requests == []


async def test_a_messaging_service_sends_without_a_from(twilio: FakeTwilioWhatsApp) -> None:
    service = next(iter(twilio.messaging_services))

    result = await send_with(twilio, from_number=None, messaging_service_sid=service)

    assert isinstance(result, Delivered)
    form = twilio.requests[0].form
    assert form["MessagingServiceSid"] == service
    assert "From" not in form
    assert form["To"] == f"whatsapp:{TO}"


async def test_api_key_credentials_are_accepted(twilio: FakeTwilioWhatsApp) -> None:
    key_sid, key_secret = next(iter(twilio.api_keys.items()))

    result = await send_with(
        twilio, auth_token=None, api_key_sid=key_sid, api_key_secret=key_secret
    )

    assert isinstance(result, Delivered)
    user = base64.b64decode(twilio.requests[0].headers["Authorization"].split()[1]).decode()
    assert user.startswith(f"{key_sid}:")


async def test_a_recipient_without_a_phone_is_permanent_and_unsent(
    twilio: FakeTwilioWhatsApp, provider: TwilioWhatsAppProvider
) -> None:
    message = outbound(Channel.WHATSAPP, Recipient(email="a@example.org"), body="x", country="MX")

    result = await provider.send(message)

    assert isinstance(result, PermanentFailure)
    assert result.error_class == "invalid_recipient"
    assert twilio.requests == []


# -- the API's own validation, as Twilio answers it ---------------------------


async def test_a_from_that_is_not_a_whatsapp_sender_is_configuration(
    twilio: FakeTwilioWhatsApp,
) -> None:
    result = await send_with(twilio, from_number="+15005550006")  # an SMS number, not WhatsApp

    assert isinstance(result, PermanentFailure)
    assert (result.code, result.error_class, result.outcome) == (
        "63007",
        "from_not_whatsapp_sender",
        Outcome.CONFIGURATION,
    )


async def test_a_content_sid_the_account_does_not_have_is_permanent(
    twilio: FakeTwilioWhatsApp, provider: TwilioWhatsAppProvider
) -> None:
    spec = template(content_sid="HX" + "c" * 32)

    result = await provider.send(whatsapp(TO, metadata=spec))

    assert isinstance(result, PermanentFailure)
    assert (result.code, result.error_class, result.configuration) == (
        "21655",
        "invalid_content_sid",
        False,
    )


async def test_an_empty_content_variable_is_refused_by_twilio_as_permanent(
    twilio: FakeTwilioWhatsApp, provider: TwilioWhatsAppProvider
) -> None:
    spec = template(content_sid=ORDER_SHIPPED, variables={"1": "Ana", "2": ""})

    result = await provider.send(whatsapp(TO, metadata=spec))

    assert isinstance(result, PermanentFailure)
    assert (result.code, result.error_class) == ("21656", "invalid_content_variables")


async def test_an_invalid_to_number_is_permanent(provider: TwilioWhatsAppProvider) -> None:
    result = await provider.send(whatsapp("+1555"))

    assert isinstance(result, PermanentFailure)
    assert (result.code, result.error_class, result.configuration) == ("21211", "invalid_to", False)


async def test_a_wrong_auth_token_is_configuration_and_never_shown(
    twilio: FakeTwilioWhatsApp,
) -> None:
    result = await send_with(twilio, auth_token="not-the-token")

    assert isinstance(result, PermanentFailure)
    assert (result.code, result.outcome) == ("20003", Outcome.CONFIGURATION)
    assert "not-the-token" not in result.message


# -- documented codes, scripted -----------------------------------------------


@pytest.mark.parametrize(
    ("code", "error_class"),
    [
        (63003, "recipient_not_found"),
        (63005, "content_rejected"),
        (63013, "channel_policy_violation"),
        (63014, "blocked_by_user"),
        (63016, "session_window_closed"),
        (63021, "invalid_content"),
        (63024, "invalid_whatsapp_recipient"),
        (63027, "template_not_found"),
        (63028, "template_param_count_mismatch"),
        (63032, "whatsapp_limitation"),
        (63049, "marketing_not_delivered"),
        (21610, "unsubscribed"),
    ],
)
async def test_recipient_and_message_errors_are_permanent(
    twilio: FakeTwilioWhatsApp, provider: TwilioWhatsAppProvider, code: int, error_class: str
) -> None:
    twilio.queue_error(code)

    result = await provider.send(whatsapp(TO))

    assert isinstance(result, PermanentFailure)
    assert (result.code, result.error_class, result.outcome) == (
        str(code),
        error_class,
        Outcome.PERMANENT,
    )


@pytest.mark.parametrize(
    ("code", "status", "error_class"),
    [
        (63001, 400, "channel_authentication"),
        (63002, 400, "from_not_whatsapp_sender"),
        (63007, 400, "from_not_whatsapp_sender"),
        (63008, 400, "channel_misconfigured"),
        (20003, 401, "authentication"),
        (20404, 404, "account_not_found"),
        (21705, 400, "invalid_messaging_service"),
    ],
)
async def test_account_and_sender_errors_are_configuration(
    twilio: FakeTwilioWhatsApp,
    provider: TwilioWhatsAppProvider,
    code: int,
    status: int,
    error_class: str,
) -> None:
    twilio.queue_error(code, status=status)

    result = await provider.send(whatsapp(TO))

    assert isinstance(result, PermanentFailure)
    assert (result.code, result.error_class, result.outcome) == (
        str(code),
        error_class,
        Outcome.CONFIGURATION,
    )


@pytest.mark.parametrize(
    ("code", "status", "error_class"),
    [
        (63010, 400, "provider_error"),
        (63012, 400, "provider_error"),
        (63017, 400, "rate_limited"),
        (63018, 400, "rate_limited"),
        (63018, 429, "rate_limited"),
        (20429, 429, "rate_limited"),
        (20503, 503, "provider_unavailable"),
    ],
)
async def test_internal_errors_and_rate_limits_are_transient(
    twilio: FakeTwilioWhatsApp,
    provider: TwilioWhatsAppProvider,
    code: int,
    status: int,
    error_class: str,
) -> None:
    twilio.queue_error(code, status=status, headers={"Retry-After": "5"})

    result = await provider.send(whatsapp(TO))

    assert isinstance(result, TransientFailure)
    assert (result.code, result.error_class, result.retry_after) == (str(code), error_class, 5.0)


async def test_a_5xx_html_page_is_transient_and_shown_to_operators_only(
    twilio: FakeTwilioWhatsApp, provider: TwilioWhatsAppProvider
) -> None:
    twilio.queue_response(502, "<html><body>Bad Gateway INTERNAL-42</body></html>")

    result = await provider.send(whatsapp(TO))

    assert isinstance(result, TransientFailure)
    assert (result.code, result.message) == ("502", "twilio_whatsapp HTTP 502")
    assert "INTERNAL-42" in (result.provider_response or "")


async def test_an_unknown_4xx_code_is_permanent_by_its_status(
    twilio: FakeTwilioWhatsApp, provider: TwilioWhatsAppProvider
) -> None:
    twilio.queue_error(63999, status=400, message="Something new")

    result = await provider.send(whatsapp(TO))

    assert isinstance(result, PermanentFailure)
    assert (result.code, result.error_class, result.configuration) == (
        "63999",
        "provider_rejected",
        False,
    )


async def test_success_without_a_sid_is_transient_not_delivered(
    twilio: FakeTwilioWhatsApp, provider: TwilioWhatsAppProvider
) -> None:
    twilio.queue_response(201, {"status": "queued"})

    result = await provider.send(whatsapp(TO))

    assert isinstance(result, TransientFailure)
    assert result.error_class == "unexpected_response"


# -- transport ------------------------------------------------------------------


async def test_a_slow_answer_is_a_transient_timeout(twilio: FakeTwilioWhatsApp) -> None:
    twilio.queue_delay(3.0)

    result = await send_with(twilio, options=FAST)

    assert isinstance(result, TransientFailure)
    assert result.error_class == "timeout"
    assert twilio.messages == []


async def test_connection_refused_is_transient() -> None:
    settings = TwilioWhatsAppSettings(
        account_sid="AC" + "1" * 32,
        auth_token=SecretStr("some-token"),
        from_number="+14155238886",
        base_url=f"http://127.0.0.1:{unused_port()}",
    )
    adapter = TwilioWhatsAppProvider(settings, options=ROOMY, outbound=LOCAL_OUTBOUND)
    try:
        result = await adapter.send(whatsapp(TO))
        check = await adapter.check()
    finally:
        await adapter.close()

    assert isinstance(result, TransientFailure)
    assert result.error_class == "connection_error"
    assert "some-token" not in result.message
    assert not check.ok
    assert check.detail.startswith("transient: connection_error")


async def test_credentials_never_appear_in_failures_or_repr(
    twilio: FakeTwilioWhatsApp, provider: TwilioWhatsAppProvider
) -> None:
    token = twilio.auth_token
    encoded = base64.b64encode(f"{twilio.account_sid}:{token}".encode()).decode()
    twilio.queue_error(63024, message=f"echo {token} (Authorization: Basic {encoded})")

    result = await provider.send(whatsapp(TO))

    assert isinstance(result, PermanentFailure)
    for text in (result.message, result.provider_response or ""):
        assert token not in text
        assert encoded not in text
    assert "***" in result.message
    assert token not in repr(provider)
    assert token not in repr(provider.settings)
    assert token not in str(provider.settings.model_dump())


# -- the outbound rule ----------------------------------------------------------


async def test_a_name_resolving_to_an_internal_address_is_refused_unsent(
    twilio: FakeTwilioWhatsApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    dns(monkeypatch, {"wa.example.test": ["127.0.0.1"]})
    base_url = twilio.base_url.replace("127.0.0.1", "wa.example.test")
    adapter = TwilioWhatsAppProvider(
        settings_for(twilio, base_url=base_url),
        options=PATIENT,
        outbound=OutboundPolicy(allow_http=True),
    )
    try:
        result = await adapter.send(whatsapp(TO))
    finally:
        await adapter.close()

    assert isinstance(result, PermanentFailure)
    assert (result.outcome, result.error_class) == (Outcome.CONFIGURATION, "outbound_refused")
    assert "address 127.0.0.1 of wa.example.test is loopback" in result.message
    assert twilio.requests == []


async def test_an_internal_base_url_is_refused_unsent_and_fails_the_check(
    twilio: FakeTwilioWhatsApp,
) -> None:
    adapter = TwilioWhatsAppProvider(
        settings_for(twilio), options=PATIENT, outbound=OutboundPolicy(allow_http=True)
    )
    try:
        result = await adapter.send(whatsapp(TO))
        check = await adapter.check()
    finally:
        await adapter.close()

    assert isinstance(result, PermanentFailure)
    assert result.outcome is Outcome.CONFIGURATION
    assert not check.ok
    assert twilio.requests == []


@pytest.mark.parametrize("field", ["base_url", "status_callback"])
async def test_the_registry_refuses_internal_urls_when_building(
    twilio: FakeTwilioWhatsApp, field: str
) -> None:
    config = {**twilio.credentials(base_url="https://api.twilio.com"), field: "https://10.0.0.7/"}

    with pytest.raises(ProviderNotConfigured, match=f"{field}: ") as raised:
        registry.build("twilio_whatsapp", config, OutboundPolicy())

    assert raised.value.field == field


# -- the registry, status callbacks and check -------------------------------------


async def test_built_by_the_registry_it_sends_with_the_hubs_receipt_url_and_checks(
    twilio: FakeTwilioWhatsApp,
) -> None:
    callbacks = Callbacks("https://hub.example.com/notify", "acme")
    port = registry.build(
        "twilio_whatsapp", twilio.credentials(), LOCAL_OUTBOUND, callbacks=callbacks
    )
    try:
        assert isinstance(port, TwilioWhatsAppProvider)
        assert port.name == "twilio_whatsapp"
        sent = await port.send(whatsapp(TO, "Built from its configuration"))
        check = await port.check()
    finally:
        await port.close()

    assert isinstance(sent, Delivered)
    form = twilio.requests[0].form
    assert (
        form["StatusCallback"] == "https://hub.example.com/notify/v1/receipts/twilio_whatsapp/acme"
    )
    assert check.ok, check.detail


async def test_free_form_outside_the_session_window_is_accepted_then_fails_with_63016(
    twilio: FakeTwilioWhatsApp,
) -> None:
    # As on Twilio: the API takes it, the status callback reports the failure.
    twilio.sessions.clear()
    async with CallbackReceiver() as hub:
        callbacks = Callbacks(hub.base_url, "acme")
        port = registry.build(
            "twilio_whatsapp", twilio.credentials(), LOCAL_OUTBOUND, callbacks=callbacks
        )
        try:
            sent = await port.send(whatsapp(TO, "Are you there?"))
        finally:
            await port.close()
        await twilio.settle()

        assert isinstance(sent, Delivered)
        [request] = hub.requests
        assert request.path == "/v1/receipts/twilio_whatsapp/acme"
        url = f"{hub.base_url}/v1/receipts/twilio_whatsapp/acme"
        twilio_receipts.verify(
            twilio.auth_token, url, request.form, request.headers["X-Twilio-Signature"]
        )
        [receipt] = twilio_receipts.parse_status("acme", request.form, datetime.now(UTC))
    assert receipt.provider_message_id == sent.provider_message_id
    assert (receipt.state, receipt.error_code) == (DeliveryState.UNDELIVERED, "63016")
    assert (receipt.channel, receipt.recipient) == (Channel.WHATSAPP, TO)


async def test_a_template_outside_the_session_window_is_delivered_as_scripted(
    twilio: FakeTwilioWhatsApp,
) -> None:
    twilio.sessions.clear()
    twilio.script(Step("sent"), Step("delivered"), Step("read"))
    async with CallbackReceiver() as hub:
        callbacks = Callbacks(hub.base_url, "acme")
        port = registry.build(
            "twilio_whatsapp", twilio.credentials(), LOCAL_OUTBOUND, callbacks=callbacks
        )
        try:
            sent = await port.send(
                whatsapp(TO, metadata=template(name="welcome", language="es_MX"))
            )
        finally:
            await port.close()
        await twilio.settle()
        statuses = [r.form["MessageStatus"] for r in hub.requests]

    assert isinstance(sent, Delivered)
    assert statuses == ["sent", "delivered", "read"]


async def test_check_reads_the_account_without_sending(
    twilio: FakeTwilioWhatsApp, provider: TwilioWhatsAppProvider
) -> None:
    result = await provider.check()

    assert result.ok, result.detail
    assert twilio.account_sid in result.detail
    assert twilio.messages == []
    assert [r.method for r in twilio.requests] == ["GET"]


async def test_check_with_a_wrong_token_is_a_configuration_problem(
    twilio: FakeTwilioWhatsApp,
) -> None:
    adapter = TwilioWhatsAppProvider(
        settings_for(twilio, auth_token="not-the-token"), options=ROOMY, outbound=LOCAL_OUTBOUND
    )
    try:
        result = await adapter.check()
    finally:
        await adapter.close()

    assert not result.ok
    assert result.detail.startswith("configuration: authentication")
    assert "20003" in result.detail
    assert "not-the-token" not in result.detail


# -- settings -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"auth_token": None}, "auth_token"),
        ({"from_number": None}, "from_number or messaging_service_sid"),
        ({"from_number": "14155238886"}, "E.164"),
        ({"from_number": "whatsapp:+0123"}, "E.164"),
        ({"content_sids": {"order_shipped": "HX123"}}, "content_sids['order_shipped']"),
        ({"content_sids": {" ": "HX" + "a" * 32}}, "must not be empty"),
        ({"region": "us1"}, "Extra inputs"),
    ],
)
def test_settings_are_validated(overrides: dict[str, object], problem: str) -> None:
    base: dict[str, object] = {
        "account_sid": "AC" + "1" * 32,
        "auth_token": "token",
        "from_number": "+14155238886",
    }
    with pytest.raises(ValidationError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        TwilioWhatsAppSettings.model_validate({**base, **overrides})
