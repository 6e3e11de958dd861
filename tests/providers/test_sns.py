"""SnsProvider: SMS through SNS Publish, on moto in server mode (real HTTP, SigV4-signed
requests) and, for the errors moto never answers, on a local SNS query API (fake_sns_api)."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import pytest
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.server import ThreadedMotoServer
from moto.sns.models import sns_backends
from pydantic import ValidationError

from integration_hub.adapters.providers import registry
from integration_hub.adapters.providers.sns import SnsProvider, SnsSettings
from integration_hub.domain.delivery import Delivered, PermanentFailure, TransientFailure
from integration_hub.domain.errors import ProviderNotConfigured
from integration_hub.domain.models import Outcome, Recipient
from integration_hub.domain.outbound import OutboundPolicy
from integration_hub.domain.routing import Channel
from support import LOCAL_OUTBOUND

from .fake_dns import dns
from .fake_http import FakeHttpServer, unused_port
from .fake_sns_api import FakeSnsApi
from .messages import outbound, sms

# A region of our own: moto's state is shared by every moto server of the process.
REGION = "sa-east-1"
ACCESS_KEY = "AKIASNSPROVIDERTEST1"
SECRET_KEY = "fake-sns-secret-access-key-0123456789"
SESSION_TOKEN = "fake-sns-session-token-abcdefghijklmnop"


@dataclass
class Recorder:
    """WSGI middleware keeping the form of every SNS call moto serves."""

    app: Callable[..., Iterable[bytes]]
    calls: list[dict[str, str]] = field(default_factory=list)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        size = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(size) if size else b""
        environ["wsgi.input"] = io.BytesIO(body)
        self.calls.append(dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True)))
        return self.app(environ, start_response)

    def published(self) -> list[dict[str, str]]:
        return [c for c in self.calls if c.get("Action") == "Publish"]


@dataclass
class Moto:
    url: str
    recorder: Recorder

    def sms(self) -> dict[str, tuple[str, str]]:
        """message id → (phone number, message), as moto's SNS recorded them."""
        recorded: dict[str, tuple[str, str]] = sns_backends[DEFAULT_ACCOUNT_ID][REGION].sms_messages
        return recorded


@pytest.fixture(scope="module")
def moto() -> Iterator[Moto]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    wsgi = server._server  # the documented class has no middleware hook
    assert wsgi is not None
    recorder = Recorder(wsgi.app)
    wsgi.app = recorder
    host, port = server.get_host_and_port()
    yield Moto(f"http://{host}:{port}", recorder)
    server.stop()


def config_for(url: str, **overrides: object) -> dict[str, object]:
    """The ``sns`` provider configuration that sends through ``url``."""
    values: dict[str, object] = {
        "region": REGION,
        "endpoint_url": url,
        "access_key_id": ACCESS_KEY,
        "secret_access_key": SECRET_KEY,
        "session_token": SESSION_TOKEN,
        "connect_timeout": 1.0,
        "read_timeout": 2.0,
    }
    values.update(overrides)
    return values


def adapter_for(url: str, **overrides: object) -> SnsProvider:
    return SnsProvider(
        SnsSettings.model_validate(config_for(url, **overrides)), outbound=LOCAL_OUTBOUND
    )


@pytest.fixture
async def provider(moto: Moto) -> AsyncIterator[SnsProvider]:
    adapter = adapter_for(moto.url)
    yield adapter
    await adapter.close()


@pytest.fixture
async def api() -> AsyncIterator[FakeSnsApi]:
    async with FakeSnsApi(access_key=ACCESS_KEY, region=REGION) as fake:
        yield fake


@pytest.fixture
async def on_api(api: FakeSnsApi) -> AsyncIterator[SnsProvider]:
    adapter = adapter_for(api.base_url)
    yield adapter
    await adapter.close()


def attributes(form: dict[str, str]) -> dict[str, tuple[str, str]]:
    """A query-protocol MessageAttributes map: name → (DataType, StringValue)."""
    found: dict[str, tuple[str, str]] = {}
    n = 1
    while (name := form.get(f"MessageAttributes.entry.{n}.Name")) is not None:
        prefix = f"MessageAttributes.entry.{n}.Value"
        found[name] = (form[f"{prefix}.DataType"], form[f"{prefix}.StringValue"])
        n += 1
    return found


def unchecked_sms(phone: str | None) -> Any:
    """An SMS to a phone the API would refuse (stored before a rule, or forged)."""
    return outbound(Channel.SMS, Recipient.model_construct(phone=phone), body="Hi", country="US")


def assert_no_secret(result: object) -> None:
    for secret in (SECRET_KEY, SESSION_TOKEN):
        assert secret not in repr(result)


# -- moto: what SNS accepts ---------------------------------------------------------


async def test_sns_publishes_to_the_phone_number_as_transactional(
    moto: Moto, provider: SnsProvider
) -> None:
    result = await provider.send(sms("+15551230001", "Your code is 424242"))

    assert isinstance(result, Delivered)
    assert moto.sms()[result.provider_message_id] == ("+15551230001", "Your code is 424242")
    [call] = [c for c in moto.recorder.published() if c["PhoneNumber"] == "+15551230001"]
    assert "TopicArn" not in call
    assert "TargetArn" not in call
    assert attributes(call) == {"AWS.SNS.SMS.SMSType": ("String", "Transactional")}


async def test_sns_sends_the_sender_id_origination_number_and_sms_type_set(moto: Moto) -> None:
    adapter = adapter_for(
        moto.url, sms_type="Promotional", sender_id="AcmeShop", origination_number="+15557654321"
    )
    try:
        result = await adapter.send(sms("+15551230002"))
    finally:
        await adapter.close()

    assert isinstance(result, Delivered)
    [call] = [c for c in moto.recorder.published() if c["PhoneNumber"] == "+15551230002"]
    assert attributes(call) == {
        "AWS.SNS.SMS.SMSType": ("String", "Promotional"),
        "AWS.SNS.SMS.SenderID": ("String", "AcmeShop"),
        "AWS.MM.SMS.OriginationNumber": ("String", "+15557654321"),
    }


async def test_sns_reuses_one_client_across_sends(provider: SnsProvider) -> None:
    assert isinstance(await provider.send(sms()), Delivered)
    client = provider._sdk.client
    assert isinstance(await provider.send(sms()), Delivered)

    assert client is not None
    assert provider._sdk.client is client


async def test_sns_built_by_the_registry_from_its_config_sends_and_checks(moto: Moto) -> None:
    port = registry.build("sns", config_for(moto.url), LOCAL_OUTBOUND)
    try:
        assert isinstance(port, SnsProvider)
        assert port.name == "sns"
        sent = await port.send(sms("+15551230003", "Built from its configuration"))
        check = await port.check()
    finally:
        await port.close()
    assert isinstance(sent, Delivered)
    assert moto.sms()[sent.provider_message_id] == ("+15551230003", "Built from its configuration")
    assert check.ok, check.detail


async def test_sns_a_number_not_in_e164_is_the_recipients_problem(
    moto: Moto, provider: SnsProvider
) -> None:
    before = len(moto.sms())
    # moto answers as SNS does: InvalidParameter naming the phone number.
    result = await provider.send(unchecked_sms("+0551230004"))

    assert isinstance(result, PermanentFailure)
    assert (result.code, result.error_class, result.outcome) == (
        "InvalidParameter",
        "invalid_recipient",
        Outcome.PERMANENT,
    )
    assert "E164" in result.message
    assert len(moto.sms()) == before
    assert_no_secret(result)


async def test_sns_without_a_phone_fails_before_any_call(moto: Moto, provider: SnsProvider) -> None:
    calls = len(moto.recorder.calls)
    result = await provider.send(unchecked_sms(None))
    assert isinstance(result, PermanentFailure)
    assert result.error_class == "invalid_recipient"
    assert len(moto.recorder.calls) == calls


async def test_sns_checks_opt_out_first_when_asked_and_does_not_publish_to_it(
    moto: Moto,
) -> None:
    # moto reports every number ending in 99 as opted out.
    adapter = adapter_for(moto.url, check_opt_out=True)
    try:
        refused = await adapter.send(sms("+15551230099"))
        sent = await adapter.send(sms("+15551230005"))
    finally:
        await adapter.close()

    assert isinstance(refused, PermanentFailure)
    assert (refused.error_class, refused.outcome) == ("opted_out", Outcome.PERMANENT)
    assert not [c for c in moto.recorder.published() if c["PhoneNumber"] == "+15551230099"]
    asked = [c for c in moto.recorder.calls if c.get("Action") == "CheckIfPhoneNumberIsOptedOut"]
    assert {c["phoneNumber"] for c in asked} >= {"+15551230099", "+15551230005"}
    assert isinstance(sent, Delivered)


async def test_sns_without_check_opt_out_publishes_with_one_call(
    moto: Moto, provider: SnsProvider
) -> None:
    calls = len(moto.recorder.calls)
    # SNS accepts a Publish to an opted-out number (and then drops it).
    assert isinstance(await provider.send(sms("+15551230199")), Delivered)
    assert [c["Action"] for c in moto.recorder.calls[calls:]] == ["Publish"]


async def test_sns_check_reads_sms_attributes_and_sends_nothing(
    moto: Moto, provider: SnsProvider
) -> None:
    calls = len(moto.recorder.calls)
    result = await provider.check()

    assert result.ok, result.detail
    assert REGION in result.detail
    assert [c["Action"] for c in moto.recorder.calls[calls:]] == ["GetSMSAttributes"]


async def test_sns_secret_key_never_appears_in_repr(provider: SnsProvider) -> None:
    for text in (repr(provider), repr(provider.settings), str(provider.settings.model_dump())):
        assert SECRET_KEY not in text
        assert SESSION_TOKEN not in text


# -- documented errors, over HTTP -----------------------------------------------------

PHONE_REASON = "Invalid parameter: PhoneNumber Reason: +15551230006 is not valid to publish to"


@pytest.mark.parametrize(
    ("status", "code", "message", "error_class", "outcome"),
    [
        (
            403,
            "AuthorizationError",
            "User: arn:aws:iam::123456789012:user/hub is not "
            "authorized to perform: SNS:Publish on resource: +15551230006",
            "sns_configuration",
            Outcome.CONFIGURATION,
        ),
        (
            403,
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
            "sns_configuration",
            Outcome.CONFIGURATION,
        ),
        (
            403,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match",
            "sns_configuration",
            Outcome.CONFIGURATION,
        ),
        (403, "AccessDenied", "Access denied", "sns_configuration", Outcome.CONFIGURATION),
        (
            403,
            "ExpiredToken",
            "The security token included in the request is expired",
            "sns_configuration",
            Outcome.CONFIGURATION,
        ),
        (
            400,
            "KMSAccessDenied",
            "no access to the key",
            "sns_configuration",
            Outcome.CONFIGURATION,
        ),
        (
            400,
            "InvalidParameter",
            "Invalid parameter: OriginationNumber Reason: not owned",
            "invalid_sender",
            Outcome.CONFIGURATION,
        ),
        (
            400,
            "ParameterValueInvalid",
            "Invalid parameter: MessageAttributes Reason: AWS.SNS.SMS.SenderID is invalid",
            "invalid_sender",
            Outcome.CONFIGURATION,
        ),
        (400, "InvalidParameter", PHONE_REASON, "invalid_recipient", Outcome.PERMANENT),
        (
            400,
            "ParameterValueInvalid",
            "Invalid parameter: PhoneNumber Reason: input incorrectly formatted",
            "invalid_recipient",
            Outcome.PERMANENT,
        ),
        (
            400,
            "InvalidParameter",
            "Invalid parameter: Message too long",
            "message_rejected",
            Outcome.PERMANENT,
        ),
        (400, "OptedOut", "The phone number opted out", "opted_out", Outcome.PERMANENT),
        (429, "Throttled", "Rate exceeded", "rate_limited", Outcome.TRANSIENT),
        (400, "Throttling", "Rate exceeded", "rate_limited", Outcome.TRANSIENT),
        (400, "KMSThrottling", "KMS rate exceeded", "rate_limited", Outcome.TRANSIENT),
        (500, "InternalError", "Internal error", "provider_error", Outcome.TRANSIENT),
        (500, "InternalFailure", "Internal failure", "provider_error", Outcome.TRANSIENT),
        (503, "ServiceUnavailable", "Service unavailable", "provider_error", Outcome.TRANSIENT),
        # Codes SNS does not document for Publish: by HTTP status.
        (404, "NotFound", "Topic does not exist", "provider_rejected", Outcome.CONFIGURATION),
        (400, "SomethingNew", "New rule", "provider_rejected", Outcome.PERMANENT),
        (502, "SomethingNew", "Bad gateway", "provider_error", Outcome.TRANSIENT),
    ],
)
async def test_sns_classifies_its_documented_error_codes(
    api: FakeSnsApi,
    on_api: SnsProvider,
    status: int,
    code: str,
    message: str,
    error_class: str,
    outcome: Outcome,
) -> None:
    api.queue_error(status, code, message, fault="Receiver" if status >= 500 else "Sender")

    result = await on_api.send(sms("+15551230006"))

    assert isinstance(result, TransientFailure | PermanentFailure)
    assert (result.code, result.error_class, result.outcome) == (code, error_class, outcome)
    assert message[:40] in result.message
    assert result.provider_response is not None
    assert code in result.provider_response
    # One attempt is one call: the SDK does not retry behind the hub's back.
    assert len(api.requests) == 1
    assert api.requests[0].form["Action"] == "Publish"


async def test_sns_a_secret_echoed_in_an_error_is_redacted(
    api: FakeSnsApi, on_api: SnsProvider
) -> None:
    api.queue_error(403, "SignatureDoesNotMatch", f"expected key {SECRET_KEY} {SESSION_TOKEN}")

    result = await on_api.send(sms())

    assert isinstance(result, PermanentFailure)
    assert "***" in result.message
    assert_no_secret(result)


async def test_sns_a_5xx_that_is_not_xml_is_transient(api: FakeSnsApi, on_api: SnsProvider) -> None:
    api.queue_response(502, "<html>bad gateway</html>")

    result = await on_api.send(sms())

    assert isinstance(result, TransientFailure)
    assert result.outcome is Outcome.TRANSIENT


async def test_sns_publish_without_a_message_id_is_transient(
    api: FakeSnsApi, on_api: SnsProvider
) -> None:
    api.queue_publish_without_message_id()

    result = await on_api.send(sms())

    assert isinstance(result, TransientFailure)
    assert result.error_class == "unexpected_response"


async def test_sns_signs_with_the_configured_key_and_region(
    api: FakeSnsApi, on_api: SnsProvider
) -> None:
    result = await on_api.send(sms("+15551230007", "Signed"))

    assert isinstance(result, Delivered)
    [published] = api.published
    assert (published["PhoneNumber"], published["Message"]) == ("+15551230007", "Signed")
    auth = api.requests[0].headers["Authorization"]
    assert f"Credential={ACCESS_KEY}/" in auth
    assert f"/{REGION}/sns/aws4_request" in auth
    assert SECRET_KEY not in auth


async def test_sns_a_slow_answer_is_a_transient_timeout(api: FakeSnsApi) -> None:
    adapter = adapter_for(api.base_url, read_timeout=0.3)
    api.queue_delay(3)
    try:
        result = await adapter.send(sms())
    finally:
        await adapter.close()

    assert isinstance(result, TransientFailure)
    assert result.error_class == "timeout"
    assert_no_secret(result)


async def test_sns_connection_refused_is_transient() -> None:
    adapter = adapter_for(f"http://127.0.0.1:{unused_port()}")
    try:
        result = await adapter.send(sms())
        check = await adapter.check()
    finally:
        await adapter.close()

    assert isinstance(result, TransientFailure)
    assert result.error_class == "connection_error"
    assert_no_secret(result)
    assert not check.ok
    assert check.detail.startswith("transient")


async def test_sns_check_fails_as_configuration_when_credentials_are_refused(
    api: FakeSnsApi, on_api: SnsProvider
) -> None:
    api.queue_error(403, "InvalidClientTokenId", "The security token included is invalid.")

    result = await on_api.check()

    assert not result.ok
    assert result.detail.startswith("configuration: sns_configuration")
    assert [r.form["Action"] for r in api.requests] == ["GetSMSAttributes"]
    assert api.published == []
    assert SECRET_KEY not in result.detail


async def test_sns_check_fails_as_configuration_when_the_key_is_another_accounts(
    api: FakeSnsApi,
) -> None:
    adapter = adapter_for(api.base_url, access_key_id="AKIASOMEONEELSE00001")
    try:
        result = await adapter.check()
    finally:
        await adapter.close()
    # The fake refuses a key it does not know, as SNS does.
    assert not result.ok
    assert "InvalidClientTokenId" in result.detail


async def test_sns_check_passes_on_the_api_and_publishes_nothing(
    api: FakeSnsApi, on_api: SnsProvider
) -> None:
    result = await on_api.check()
    assert result.ok, result.detail
    assert "account default Promotional" in result.detail
    assert api.published == []


# -- the outbound rule (SSRF) ---------------------------------------------------------


@pytest.mark.parametrize("by_name", [False, True], ids=["literal", "resolved"])
async def test_sns_refuses_an_internal_endpoint_without_sending(
    monkeypatch: pytest.MonkeyPatch, by_name: bool
) -> None:
    async with FakeHttpServer() as internal:
        url = internal.base_url
        if by_name:
            dns(monkeypatch, {"sms.example.test": ["127.0.0.1"]})
            url = url.replace("127.0.0.1", "sms.example.test")
        adapter = SnsProvider(
            SnsSettings.model_validate(config_for(url)), outbound=OutboundPolicy(allow_http=True)
        )
        try:
            result = await adapter.send(sms())
            check = await adapter.check()
        finally:
            await adapter.close()
        assert internal.requests == []
    assert isinstance(result, PermanentFailure)
    assert (result.outcome, result.error_class) == (Outcome.CONFIGURATION, "outbound_refused")
    assert "is loopback" in result.message
    assert not check.ok


async def test_sns_reaches_an_allowed_endpoint_by_name(
    moto: Moto, monkeypatch: pytest.MonkeyPatch
) -> None:
    dns(monkeypatch, {"sms.example.test": ["127.0.0.1"]})
    adapter = adapter_for(moto.url.replace("127.0.0.1", "sms.example.test"))
    try:
        result = await adapter.send(sms())
    finally:
        await adapter.close()
    assert isinstance(result, Delivered)


def test_sns_registry_refuses_an_internal_endpoint_url_when_stored() -> None:
    with pytest.raises(ProviderNotConfigured, match=r"endpoint_url: .*loopback") as caught:
        registry.build("sns", config_for("http://127.0.0.1:9"), OutboundPolicy(allow_http=True))
    assert caught.value.field == "endpoint_url"


# -- settings ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"sms_type": "Marketing"},
        {"sender_id": "TooLongSender1"},
        {"sender_id": "12345"},  # a sender ID needs a letter
        {"sender_id": "Acme Shop"},
        {"origination_number": "15557654321x"},
        {"region": "eu-west-1.evil.example"},
        {"topic_arn": "arn:aws:sns:sa-east-1:123456789012:t"},  # unknown key
    ],
)
def test_sns_settings_refuse_invalid_values(overrides: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        SnsSettings.model_validate(config_for("https://sns.example.com", **overrides))


def test_sns_settings_have_sensible_defaults() -> None:
    settings = SnsSettings.model_validate({})
    assert (settings.region, settings.sms_type, settings.check_opt_out) == (
        "us-east-1",
        "Transactional",
        False,
    )
    assert settings.secrets() == ()
