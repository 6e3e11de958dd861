"""WhatsAppProvider against a local WhatsApp Cloud API over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from integration_hub.adapters.providers import registry
from integration_hub.adapters.providers.http import HttpOptions
from integration_hub.adapters.providers.whatsapp import WhatsAppProvider, WhatsAppSettings
from integration_hub.domain.delivery import Delivered, PermanentFailure, TransientFailure
from integration_hub.domain.models import Outcome, Recipient
from integration_hub.domain.routing import Channel
from support import LOCAL_OUTBOUND

from .fake_http import unused_port
from .fake_whatsapp import FakeWhatsApp
from .messages import outbound, whatsapp

# Only the slow-answer tests need a short timeout; every other test waits long
# enough that a loaded machine's scheduling stall never turns an answer into a
# timeout.
FAST = HttpOptions(total_timeout=0.5, connect_timeout=0.5, pool_limit=8)
ROOMY = HttpOptions(total_timeout=10, connect_timeout=10, pool_limit=8)


@pytest.fixture
async def meta() -> AsyncIterator[FakeWhatsApp]:
    async with FakeWhatsApp() as fake:
        yield fake


def config_for(fake: FakeWhatsApp, **overrides: object) -> dict[str, object]:
    """The ``whatsapp_cloud`` provider configuration that sends to ``fake``."""
    values: dict[str, object] = {
        "phone_number_id": fake.phone_number_id,
        "access_token": fake.access_token,
        "api_version": "v21.0",
        "base_url": fake.base_url,
    }
    values.update(overrides)
    return values


def settings_for(fake: FakeWhatsApp, **overrides: object) -> WhatsAppSettings:
    return WhatsAppSettings.model_validate(config_for(fake, **overrides))


@pytest.fixture
async def provider(meta: FakeWhatsApp) -> AsyncIterator[WhatsAppProvider]:
    adapter = WhatsAppProvider(settings_for(meta), options=ROOMY, outbound=LOCAL_OUTBOUND)
    yield adapter
    await adapter.close()


def template(name: str, *parameters: object, language: str = "en_US") -> dict[str, object]:
    return {
        "whatsapp": {
            "template": {"name": name, "language": language, "parameters": list(parameters)}
        }
    }


async def test_whatsapp_text_message_is_delivered_with_the_wamid(
    meta: FakeWhatsApp, provider: WhatsAppProvider
) -> None:
    message = whatsapp("+5215512345678", "Your order shipped")

    result = await provider.send(message)

    assert isinstance(result, Delivered)
    assert result.provider_message_id.startswith("wamid.")
    request = meta.requests[0]
    assert request.path == f"/v21.0/{meta.phone_number_id}/messages"
    assert request.headers["Authorization"] == f"Bearer {meta.access_token}"
    assert request.json == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "5215512345678",
        "type": "text",
        "text": {"body": "Your order shipped"},
        "biz_opaque_callback_data": message.notification_id,
    }


async def test_whatsapp_body_is_utf8_json_with_any_characters_intact(
    meta: FakeWhatsApp, provider: WhatsAppProvider
) -> None:
    text = '¿Llegó? 🎉 "quoted" \\ back\nslash'
    result = await provider.send(whatsapp("+5215512345678", text))

    assert isinstance(result, Delivered)
    request = meta.requests[0]
    assert request.headers["Content-Type"] == "application/json"
    assert request.json["text"] == {"body": text}
    assert int(request.headers["Content-Length"]) == len(request.body)


async def test_whatsapp_built_by_the_registry_from_its_config_sends_and_checks(
    meta: FakeWhatsApp,
) -> None:
    # As the hub builds it: by name, from the tenant's stored configuration.
    port = registry.build("whatsapp_cloud", config_for(meta), LOCAL_OUTBOUND)
    try:
        assert isinstance(port, WhatsAppProvider)
        assert port.name == "whatsapp_cloud"
        sent = await port.send(whatsapp("+5215512345678", "Built from its configuration"))
        check = await port.check()
    finally:
        await port.close()
    assert isinstance(sent, Delivered)
    assert sent.provider_message_id.startswith("wamid.")
    assert [m["text"] for m in meta.messages] == [{"body": "Built from its configuration"}]
    assert check.ok, check.detail


async def test_whatsapp_template_from_metadata_is_sent_as_a_template(
    meta: FakeWhatsApp, provider: WhatsAppProvider
) -> None:
    result = await provider.send(whatsapp(metadata=template("order_update", "Ana", 42)))

    assert isinstance(result, Delivered)
    sent = meta.messages[0]
    assert sent["type"] == "template"
    assert "text" not in sent
    assert sent["template"] == {
        "name": "order_update",
        "language": {"code": "en_US"},
        "components": [
            {
                "type": "body",
                "parameters": [{"type": "text", "text": "Ana"}, {"type": "text", "text": "42"}],
            }
        ],
    }


async def test_whatsapp_template_without_parameters_has_no_components(
    meta: FakeWhatsApp, provider: WhatsAppProvider
) -> None:
    result = await provider.send(whatsapp(metadata=template("hello_world")))

    assert isinstance(result, Delivered)
    assert "components" not in meta.messages[0]["template"]


async def test_whatsapp_template_parameter_count_mismatch_is_permanent(
    provider: WhatsAppProvider,
) -> None:
    result = await provider.send(whatsapp(metadata=template("order_update", "only one")))

    assert isinstance(result, PermanentFailure)
    assert (result.code, result.error_class, result.configuration) == (
        "132000",
        "template_param_count_mismatch",
        False,
    )
    assert "expected number of params (2)" in result.message


async def test_whatsapp_unknown_template_is_permanent(provider: WhatsAppProvider) -> None:
    result = await provider.send(whatsapp(metadata=template("no_such_template")))

    assert isinstance(result, PermanentFailure)
    assert (result.code, result.error_class) == ("132001", "template_not_found")


async def test_whatsapp_malformed_template_metadata_is_permanent_without_a_request(
    meta: FakeWhatsApp, provider: WhatsAppProvider
) -> None:
    metadata = {"whatsapp": {"template": {"name": "order_update", "parameters": "Ana"}}}

    result = await provider.send(whatsapp(metadata=metadata))

    assert isinstance(result, PermanentFailure)
    assert result.error_class == "invalid_template"
    assert meta.requests == []


async def test_whatsapp_invalid_access_token_is_configuration(meta: FakeWhatsApp) -> None:
    adapter = WhatsAppProvider(
        settings_for(meta, access_token="EAAG-revoked"), options=ROOMY, outbound=LOCAL_OUTBOUND
    )
    try:
        result = await adapter.send(whatsapp())
    finally:
        await adapter.close()

    assert isinstance(result, PermanentFailure)
    assert (result.code, result.error_class, result.configuration) == (
        "190",
        "access_token_invalid",
        True,
    )
    assert "EAAG-revoked" not in result.message


async def test_whatsapp_unknown_phone_number_id_is_configuration(meta: FakeWhatsApp) -> None:
    adapter = WhatsAppProvider(
        settings_for(meta, phone_number_id="999"), options=ROOMY, outbound=LOCAL_OUTBOUND
    )
    try:
        result = await adapter.send(whatsapp())
    finally:
        await adapter.close()

    assert isinstance(result, PermanentFailure)
    assert (result.code, result.error_class, result.configuration) == (
        "100",
        "invalid_phone_number_id",
        True,
    )


@pytest.mark.parametrize(
    ("code", "error_class"),
    [
        (131026, "undeliverable"),
        (131051, "unsupported_message_type"),
        (131047, "reengagement_window_closed"),
        (132000, "template_param_count_mismatch"),
        (132001, "template_not_found"),
        (100, "invalid_parameter"),
        (131009, "invalid_parameter_value"),
    ],
)
async def test_whatsapp_message_errors_are_permanent(
    meta: FakeWhatsApp, provider: WhatsAppProvider, code: int, error_class: str
) -> None:
    meta.queue_error(code, details="why it failed")

    result = await provider.send(whatsapp())

    assert isinstance(result, PermanentFailure)
    assert (result.code, result.error_class, result.configuration) == (
        str(code),
        error_class,
        False,
    )
    assert "why it failed" in result.message
    assert "fbtrace_id=" in result.message


@pytest.mark.parametrize(
    ("code", "error_class"),
    [
        (190, "access_token_invalid"),
        (10, "permission_denied"),
        (200, "permission_denied"),
        (131031, "account_locked"),
        (133010, "phone_number_not_registered"),
    ],
)
async def test_whatsapp_token_and_account_errors_are_configuration(
    meta: FakeWhatsApp, provider: WhatsAppProvider, code: int, error_class: str
) -> None:
    meta.queue_error(code)

    result = await provider.send(whatsapp())

    assert isinstance(result, PermanentFailure)
    assert (result.code, result.error_class, result.configuration) == (str(code), error_class, True)
    assert result.outcome is Outcome.CONFIGURATION


@pytest.mark.parametrize(
    ("code", "error_class"),
    [
        (130429, "rate_limited"),
        (131056, "rate_limited"),
        (80007, "rate_limited"),
        (4, "rate_limited"),
        (131000, "provider_error"),
        (1, "provider_error"),
        (2, "provider_unavailable"),
        (131016, "provider_unavailable"),
    ],
)
async def test_whatsapp_rate_limits_and_outages_are_transient(
    meta: FakeWhatsApp, provider: WhatsAppProvider, code: int, error_class: str
) -> None:
    meta.queue_error(code)

    result = await provider.send(whatsapp())

    assert isinstance(result, TransientFailure)
    assert (result.code, result.error_class) == (str(code), error_class)


async def test_whatsapp_130429_is_transient_although_meta_answers_http_400(
    meta: FakeWhatsApp, provider: WhatsAppProvider
) -> None:
    meta.queue_error(130429, status=400)

    result = await provider.send(whatsapp())

    assert isinstance(result, TransientFailure)
    assert result.code == "130429"


async def test_whatsapp_http_429_is_transient_and_honours_retry_after(
    meta: FakeWhatsApp, provider: WhatsAppProvider
) -> None:
    meta.queue_error(130429, status=429, headers={"Retry-After": "12"})

    result = await provider.send(whatsapp())

    assert isinstance(result, TransientFailure)
    assert (result.code, result.retry_after) == ("130429", 12.0)


async def test_whatsapp_5xx_with_a_non_json_body_is_transient(
    meta: FakeWhatsApp, provider: WhatsAppProvider
) -> None:
    meta.queue_response(502, "<html><body>Bad Gateway</body></html>")

    result = await provider.send(whatsapp())

    assert isinstance(result, TransientFailure)
    assert (result.code, result.error_class) == ("502", "provider_error")
    # An undocumented body is for operators only, never in the tenant's message.
    assert result.message == "whatsapp HTTP 502"
    assert "Bad Gateway" in (result.provider_response or "")


async def test_whatsapp_unknown_5xx_code_is_transient_even_if_mapped_permanent(
    meta: FakeWhatsApp, provider: WhatsAppProvider
) -> None:
    # The status wins for 5xx: Meta did not take the message.
    meta.queue_error(131026, status=500)

    result = await provider.send(whatsapp())

    assert isinstance(result, TransientFailure)


async def test_whatsapp_slow_answer_is_a_transient_timeout(meta: FakeWhatsApp) -> None:
    meta.queue_delay(3.0)

    adapter = WhatsAppProvider(settings_for(meta), options=FAST, outbound=LOCAL_OUTBOUND)
    try:
        result = await adapter.send(whatsapp())
    finally:
        await adapter.close()

    assert isinstance(result, TransientFailure)
    assert result.error_class == "timeout"


async def test_whatsapp_connection_refused_is_transient() -> None:
    settings = WhatsAppSettings(
        phone_number_id="1",
        access_token=SecretStr("EAAG-secret"),
        base_url=f"http://127.0.0.1:{unused_port()}",
    )
    adapter = WhatsAppProvider(settings, options=ROOMY, outbound=LOCAL_OUTBOUND)
    try:
        result = await adapter.send(whatsapp())
    finally:
        await adapter.close()

    assert isinstance(result, TransientFailure)
    assert result.error_class == "connection_error"


async def test_whatsapp_access_token_never_appears_in_failures_or_repr(
    meta: FakeWhatsApp, provider: WhatsAppProvider
) -> None:
    token = meta.access_token
    meta.queue_error(131009, message=f"(#131009) bad token {token}", details=f"Bearer {token}")

    result = await provider.send(whatsapp())

    assert isinstance(result, PermanentFailure)
    assert token not in result.message
    assert "***" in result.message
    assert token not in repr(provider)
    assert token not in repr(provider.settings)


async def test_whatsapp_recipient_without_phone_is_permanent_without_a_request(
    meta: FakeWhatsApp, provider: WhatsAppProvider
) -> None:
    message = outbound(Channel.WHATSAPP, Recipient(email="a@example.org"), body="x", country="MX")

    result = await provider.send(message)

    assert isinstance(result, PermanentFailure)
    assert result.error_class == "invalid_recipient"
    assert meta.requests == []


async def test_whatsapp_check_reads_the_phone_number_without_sending(
    meta: FakeWhatsApp, provider: WhatsAppProvider
) -> None:
    result = await provider.check()
    assert result.ok, result.detail
    assert "Fake Business" in result.detail
    assert meta.messages == []


async def test_whatsapp_check_with_an_expired_token_is_a_configuration_problem(
    meta: FakeWhatsApp,
) -> None:
    adapter = WhatsAppProvider(
        settings_for(meta, access_token="EAAG-expired"), outbound=LOCAL_OUTBOUND
    )
    result = await adapter.check()
    await adapter.close()
    assert not result.ok
    assert result.detail.startswith("configuration")
    assert "EAAG-expired" not in result.detail


@pytest.mark.parametrize(
    "spec",
    [
        "Ana +5215512345678",
        {"name": "", "language": "en_US"},
        {"name": "order_update", "language": 5215512345678},
        {"name": "order_update", "parameters": "Ana +5215512345678"},
        {"name": "order_update", "parameters": [{"Ana": "+5215512345678"}]},
    ],
)
async def test_whatsapp_a_malformed_template_is_described_without_quoting_the_request(
    meta: FakeWhatsApp, provider: WhatsAppProvider, spec: object
) -> None:
    result = await provider.send(whatsapp(metadata={"whatsapp": {"template": spec}}))

    assert isinstance(result, PermanentFailure)
    assert result.error_class == "invalid_template"
    assert "Ana" not in result.message
    assert "5215512345678" not in result.message
    assert meta.requests == []
