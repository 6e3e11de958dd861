"""The provider registry reading a tenant's settings: an outage is not "not configured"."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from integration_hub.adapters.crypto.local import KeyRingError
from integration_hub.adapters.providers.registry import ProviderRegistry, build
from integration_hub.domain.errors import ProviderNotConfigured, Unavailable
from integration_hub.domain.routing import Channel
from support import LOCAL_OUTBOUND, ManualClock

CONFIG = {
    "phone_number_id": "1234567890",
    "access_token": "EAAG-token",
    "base_url": "http://127.0.0.1:9",
}


class Credentials:
    """Stored provider settings that fail with ``errors`` first, one per read."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.stored: dict[tuple[str, str], dict[str, Any]] = {}

    async def get_credentials(self, tenant: str, provider: str) -> dict[str, Any] | None:
        if self.errors:
            raise self.errors.pop(0)
        return self.stored.get((tenant, provider))

    async def put_credentials(self, tenant: str, provider: str, config: dict[str, Any]) -> None:
        self.stored[(tenant, provider)] = config

    async def list_credentials(self, tenant: str) -> list[str]:
        return sorted(p for t, p in self.stored if t == tenant)


@pytest.fixture
async def credentials() -> Credentials:
    made = Credentials()
    await made.put_credentials("acme", "whatsapp_cloud", CONFIG)
    return made


@pytest.fixture
async def registry(credentials: Credentials) -> AsyncIterator[ProviderRegistry]:
    made = ProviderRegistry(credentials, {}, ManualClock(), ttl_seconds=0, outbound=LOCAL_OUTBOUND)
    yield made
    await made.close()


async def test_a_store_outage_reading_the_settings_is_unavailable_not_provider_not_configured(
    credentials: Credentials, registry: ProviderRegistry
) -> None:
    credentials.errors.append(Unavailable("database unavailable"))
    # Before the fix this was ProviderNotConfigured, and the notification
    # ended FAILED as a configuration problem although nothing was wrong.
    with pytest.raises(Unavailable):
        await registry.get("acme", Channel.WHATSAPP, "whatsapp_cloud")
    # Once the store is back, the same registry finds the provider.
    provider = await registry.get("acme", Channel.WHATSAPP, "whatsapp_cloud")
    assert provider.name == "whatsapp_cloud"


async def test_settings_that_cannot_be_decrypted_are_still_not_configured(
    credentials: Credentials, registry: ProviderRegistry
) -> None:
    credentials.errors.append(KeyRingError("the data key does not decrypt"))
    with pytest.raises(ProviderNotConfigured, match="cannot be read: the data key does not"):
        await registry.get("acme", Channel.WHATSAPP, "whatsapp_cloud")


async def test_a_tenant_without_settings_is_not_configured(registry: ProviderRegistry) -> None:
    with pytest.raises(ProviderNotConfigured, match="has no configuration"):
        await registry.get("globex", Channel.WHATSAPP, "whatsapp_cloud")


VONAGE = {
    "api_key": "abcd1234",
    "api_secret": "vonage-secret-value",
    "sender": "AcmeInc",
    "base_url": "http://127.0.0.1:9",
}


async def test_the_vonage_kind_builds_for_sms_from_stored_settings(
    credentials: Credentials, registry: ProviderRegistry
) -> None:
    await credentials.put_credentials("acme", "vonage", VONAGE)
    provider = await registry.get("acme", Channel.SMS, "vonage")
    assert provider.name == "vonage"
    with pytest.raises(ProviderNotConfigured, match="cannot send whatsapp"):
        await registry.get("acme", Channel.WHATSAPP, "vonage")


def test_the_vonage_kind_validates_its_settings_without_echoing_them() -> None:
    config = {**VONAGE, "api_secret": None, "sender": "no-such sender!", "api_sekret": "x"}
    with pytest.raises(ProviderNotConfigured, match="invalid vonage configuration") as raised:
        build("vonage", config, LOCAL_OUTBOUND)
    message = raised.value.message
    assert "sender:" in message
    assert "api_sekret: Extra inputs" in message
    assert "no-such sender!" not in message
    with pytest.raises(ProviderNotConfigured, match="api_secret or signature_secret"):
        build("vonage", {**VONAGE, "api_secret": None}, LOCAL_OUTBOUND)


SNS_SECRET = "sns-secret-key-never-shown-0001"


async def test_the_sns_kind_builds_for_sms_from_stored_settings(
    credentials: Credentials, registry: ProviderRegistry
) -> None:
    await credentials.put_credentials(
        "acme",
        "sns",
        {
            "region": "eu-west-1",
            "access_key_id": "AKIAREGISTRYTEST0001",
            "secret_access_key": SNS_SECRET,
            "sender_id": "Acme",
        },
    )
    provider = await registry.get("acme", Channel.SMS, "sns")
    assert provider.name == "sns"
    with pytest.raises(ProviderNotConfigured, match="'sns' cannot send email"):
        await registry.get("acme", Channel.EMAIL, "sns")


def test_the_sns_kind_validates_its_settings_without_showing_them() -> None:
    with pytest.raises(ProviderNotConfigured) as caught:
        build("sns", {"secret_access_key": SNS_SECRET, "sender_id": "no spaces", "topic": "x"})
    message = caught.value.message
    assert message.startswith("invalid sns configuration:")
    assert "sender_id" in message
    assert "topic" in message
    assert SNS_SECRET not in message
    assert "no spaces" not in message


TWILIO_WHATSAPP = {
    "account_sid": "AC" + "1" * 32,
    "auth_token": "twilio-token-not-to-be-shown",
    "from_number": "+14155238886",
    "content_sids": {"order_shipped": "HX" + "a" * 32},
    "base_url": "http://127.0.0.1:9",
}


async def test_twilio_whatsapp_is_built_for_whatsapp_only(credentials: Credentials) -> None:
    await credentials.put_credentials("acme", "twilio_whatsapp", TWILIO_WHATSAPP)
    made = ProviderRegistry(credentials, {}, ManualClock(), ttl_seconds=0, outbound=LOCAL_OUTBOUND)
    try:
        provider = await made.get("acme", Channel.WHATSAPP, "twilio_whatsapp")
        assert provider.name == "twilio_whatsapp"
        with pytest.raises(ProviderNotConfigured, match="cannot send sms"):
            await made.get("acme", Channel.SMS, "twilio_whatsapp")
    finally:
        await made.close()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"from_number": "14155238886"}, "from_number"),
        ({"content_sids": {"order_shipped": "not-a-sid"}}, "content_sids"),
        ({"auth_token": None}, "(root)"),
        ({"sender": "+14155238886"}, "sender"),
    ],
)
def test_twilio_whatsapp_settings_are_validated_without_showing_values(
    change: dict[str, Any], field: str
) -> None:
    config = {**TWILIO_WHATSAPP, **change}
    with pytest.raises(ProviderNotConfigured, match="invalid twilio_whatsapp configuration") as e:
        build("twilio_whatsapp", config, LOCAL_OUTBOUND)
    assert f"{field}: " in e.value.message
    assert "twilio-token-not-to-be-shown" not in e.value.message
