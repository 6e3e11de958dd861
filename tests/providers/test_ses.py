"""SesProvider against moto in server mode: real HTTP, real SigV4-signed requests."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import boto3  # type: ignore[import-untyped]
import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped]
from moto.server import ThreadedMotoServer

from integration_hub.adapters.providers import registry
from integration_hub.adapters.providers.ses import SesProvider, SesSettings, classify
from integration_hub.domain.delivery import Delivered, PermanentFailure, TransientFailure
from integration_hub.domain.models import Outcome
from integration_hub.domain.outbound import OutboundPolicy
from support import LOCAL_OUTBOUND

from .fake_dns import dns
from .fake_http import FakeHttpServer, unused_port
from .messages import mail

# A region of our own, so other tests sharing the in-process moto state do not interfere.
REGION = "ap-southeast-2"
ACCESS_KEY = "AKIAPROVIDERTEST0001"
SECRET_KEY = "fake-ses-secret-access-key-0123456789"


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    port = unused_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@contextlib.contextmanager
def boto_client(service: str, url: str) -> Iterator[Any]:
    """A client closed after use: one left to the garbage collector leaks its socket."""
    client = boto3.client(
        service,
        region_name=REGION,
        endpoint_url=url,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def sender(moto_url: str) -> str:
    """A sender identity verified in SES (moto verifies it at once)."""
    address = f"sender-{uuid.uuid4().hex[:8]}@hub.example.com"
    with boto_client("sesv2", moto_url) as sesv2:
        sesv2.create_email_identity(EmailIdentity=address)
    return address


def config_for(url: str, sender: str, **overrides: object) -> dict[str, object]:
    """The ``ses`` provider configuration that sends through moto at ``url``."""
    values: dict[str, object] = {
        "from_address": sender,
        "region": REGION,
        "endpoint_url": url,
        "access_key_id": ACCESS_KEY,
        "secret_access_key": SECRET_KEY,
        "connect_timeout": 1.0,
        "read_timeout": 2.0,
    }
    values.update(overrides)
    return values


def settings_for(url: str, sender: str, **overrides: object) -> SesSettings:
    return SesSettings.model_validate(config_for(url, sender, **overrides))


@pytest.fixture
async def provider(moto_url: str, sender: str) -> AsyncIterator[SesProvider]:
    adapter = SesProvider(
        settings_for(moto_url, sender, reply_to=("help@hub.example.com",)), outbound=LOCAL_OUTBOUND
    )
    yield adapter
    await adapter.close()


async def sent_messages(url: str) -> list[dict[str, Any]]:
    """What moto's SES backend recorded, from its data endpoint."""
    async with aiohttp.ClientSession() as session, session.get(f"{url}/moto-api/data.json") as r:
        data = await r.json(content_type=None)
    messages: list[dict[str, Any]] = data["ses"]["Message"]
    return messages


def sent_last_24_hours(url: str) -> float:
    with boto_client("ses", url) as ses:
        quota: float = ses.get_send_quota()["SentLast24Hours"]
    return quota


async def test_ses_delivers_and_moto_records_the_message(
    moto_url: str, sender: str, provider: SesProvider
) -> None:
    before = await asyncio.to_thread(sent_last_24_hours, moto_url)

    result = await provider.send(mail("ana@example.org", "Hello Ana", subject="Your receipt"))

    assert isinstance(result, Delivered)
    assert await asyncio.to_thread(sent_last_24_hours, moto_url) == before + 1
    [recorded] = [m for m in await sent_messages(moto_url) if m["id"] == result.provider_message_id]
    assert recorded["source"] == sender
    assert recorded["subject"] == "Your receipt"
    assert recorded["destinations"] == {"ToAddresses": ["ana@example.org"]}
    assert recorded["body"] == "Hello Ana"


async def test_ses_built_by_the_registry_from_its_config_sends_and_checks(
    moto_url: str, sender: str
) -> None:
    # As the hub builds it: by name, from the tenant's stored configuration.
    port = registry.build("ses", config_for(moto_url, sender), LOCAL_OUTBOUND)
    try:
        assert isinstance(port, SesProvider)
        assert port.name == "ses"
        sent = await port.send(mail("ana@example.org", "Built from its configuration"))
        check = await port.check()
    finally:
        await port.close()
    assert isinstance(sent, Delivered)
    [recorded] = [m for m in await sent_messages(moto_url) if m["id"] == sent.provider_message_id]
    assert recorded["source"] == sender
    assert recorded["body"] == "Built from its configuration"
    assert check.ok, check.detail


async def test_ses_html_body_is_sent_when_metadata_has_it(
    moto_url: str, provider: SesProvider
) -> None:
    result = await provider.send(mail(metadata={"email": {"html": "<p>Hello <b>Ana</b></p>"}}))

    assert isinstance(result, Delivered)
    [recorded] = [m for m in await sent_messages(moto_url) if m["id"] == result.provider_message_id]
    # moto keeps the HTML part when there is one.
    assert recorded["body"] == "<p>Hello <b>Ana</b></p>"


async def test_ses_reuses_one_client_across_sends(provider: SesProvider) -> None:
    assert isinstance(await provider.send(mail()), Delivered)
    client = provider._client
    assert isinstance(await provider.send(mail()), Delivered)

    assert provider._client is client


async def test_ses_unverified_sender_is_a_configuration_failure(moto_url: str) -> None:
    # SES answers MessageRejected "Email address not verified". We classify it
    # as configuration, not as a plain permanent failure: the identity (or the
    # sandbox) is the account's setup, every message from it fails the same
    # way, and only an operator can fix it by verifying the identity.
    adapter = SesProvider(
        settings_for(moto_url, "stranger@unverified.example.net"), outbound=LOCAL_OUTBOUND
    )
    try:
        result = await adapter.send(mail())
    finally:
        await adapter.close()

    assert isinstance(result, PermanentFailure)
    assert (result.code, result.error_class, result.configuration) == (
        "MessageRejected",
        "identity_not_verified",
        True,
    )
    assert result.outcome is Outcome.CONFIGURATION
    assert "not verified" in result.message
    assert SECRET_KEY not in result.message


async def test_ses_unreachable_endpoint_is_transient(sender: str) -> None:
    adapter = SesProvider(
        settings_for(f"http://127.0.0.1:{unused_port()}", sender), outbound=LOCAL_OUTBOUND
    )
    try:
        result = await adapter.send(mail())
    finally:
        await adapter.close()

    assert isinstance(result, TransientFailure)
    assert result.error_class == "connection_error"
    assert SECRET_KEY not in result.message


async def test_ses_secret_key_never_appears_in_repr(provider: SesProvider) -> None:
    assert SECRET_KEY not in repr(provider)
    assert SECRET_KEY not in repr(provider.settings)
    assert SECRET_KEY not in str(provider.settings.model_dump())


def client_error(code: str, message: str = "boom", status: int = 400) -> Exception:
    error: Exception = ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "SendEmail",
    )
    return error


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("TooManyRequestsException", 429),
        ("LimitExceededException", 400),
        ("ThrottlingException", 400),
        ("InternalFailure", 500),
        ("SomethingNew", 503),
    ],
)
def test_ses_throttling_and_5xx_error_codes_are_transient(code: str, status: int) -> None:
    result = classify(client_error(code, status=status))

    assert isinstance(result, TransientFailure)
    assert result.code == code


@pytest.mark.parametrize(
    "code",
    [
        "AccountSuspendedException",
        "SendingPausedException",
        "MailFromDomainNotVerifiedException",
        "NotFoundException",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "AccessDeniedException",
    ],
)
def test_ses_credential_and_identity_error_codes_are_configuration(code: str) -> None:
    result = classify(client_error(code, status=403))

    assert isinstance(result, PermanentFailure)
    assert (result.code, result.configuration) == (code, True)


def test_ses_rejected_content_is_permanent_not_configuration() -> None:
    result = classify(client_error("MessageRejected", "Message contains a virus"))

    assert isinstance(result, PermanentFailure)
    assert (result.code, result.error_class, result.configuration) == (
        "MessageRejected",
        "message_rejected",
        False,
    )


async def test_ses_check_finds_the_verified_sender(provider: SesProvider, sender: str) -> None:
    result = await provider.check()
    assert result.ok, result.detail
    assert sender in result.detail


async def test_ses_check_refuses_an_unknown_sender(moto_url: str) -> None:
    adapter = SesProvider(
        settings_for(moto_url, "nobody@unverified.example.com"), outbound=LOCAL_OUTBOUND
    )
    result = await adapter.check()
    await adapter.close()
    assert not result.ok
    assert result.detail.startswith("configuration")


# -- the outbound rule (SSRF) ---------------------------------------------------


@pytest.mark.parametrize("by_name", [False, True], ids=["literal", "resolved"])
async def test_ses_refuses_an_internal_endpoint_without_sending(
    sender: str, monkeypatch: pytest.MonkeyPatch, by_name: bool
) -> None:
    async with FakeHttpServer() as internal:
        url = internal.base_url
        if by_name:
            dns(monkeypatch, {"email.example.test": ["127.0.0.1"]})
            url = url.replace("127.0.0.1", "email.example.test")
        adapter = SesProvider(settings_for(url, sender), outbound=OutboundPolicy(allow_http=True))
        try:
            result = await adapter.send(mail())
            check = await adapter.check()
        finally:
            await adapter.close()
        assert internal.requests == []
    assert isinstance(result, PermanentFailure)
    assert (result.outcome, result.error_class) == (Outcome.CONFIGURATION, "outbound_refused")
    assert "127.0.0.1" in result.message
    assert "is loopback" in result.message
    assert not check.ok


async def test_ses_reaches_an_allowed_endpoint_by_name(
    moto_url: str, sender: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dns(monkeypatch, {"email.example.test": ["127.0.0.1"]})
    url = moto_url.replace("127.0.0.1", "email.example.test")
    adapter = SesProvider(settings_for(url, sender), outbound=LOCAL_OUTBOUND)
    try:
        result = await adapter.send(mail())
    finally:
        await adapter.close()
    assert isinstance(result, Delivered)
