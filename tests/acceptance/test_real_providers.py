"""Real adapters end to end: the hub's worker process calls local servers that speak
SMTP (STARTTLS + AUTH), the Twilio API, the WhatsApp Cloud API, SES and SNS (moto)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import boto3  # type: ignore[import-untyped]
import httpx
import pytest
from moto.server import ThreadedMotoServer

from hubs import HubProcesses, payload, wait_terminal
from providers.fake_http import unused_port
from providers.fake_twilio import FakeTwilio
from providers.fake_twilio_whatsapp import FakeTwilioWhatsApp
from providers.fake_vonage import FakeVonage
from providers.fake_whatsapp import FakeWhatsApp
from providers.smtp_server import Certificate, SmtpServer, self_signed_certificate

T = TypeVar("T")
SMTP_USER, SMTP_PASSWORD = "mailer", "smtp-password-for-the-acceptance-test"
SES_KEY, SES_SECRET = "AKIAFAKEACCEPTANCE", "ses-secret-for-the-acceptance-test"
SNS_KEY, SNS_SECRET = "AKIAFAKESNSACCEPTANCE", "sns-secret-for-the-acceptance-test"


class LoopThread:
    """An event loop in a thread, for the HTTP fakes the hub's processes call."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@dataclass
class Providers:
    """The running provider servers and the secrets the tenant was given."""

    smtp: SmtpServer
    twilio: FakeTwilio
    whatsapp: FakeWhatsApp
    twilio_whatsapp: FakeTwilioWhatsApp
    vonage: FakeVonage
    moto_url: str
    secrets: tuple[str, ...]


def configure(hub: HubProcesses, tenant: str, provider: str, config: dict[str, Any]) -> None:
    path = hub.workdir / f"{tenant}-{provider}.json"
    path.write_text(json.dumps(config))
    done = hub.cli("tenants", "set-credentials", tenant, provider, "--from-file", str(path))
    assert done.returncode == 0, done.stderr
    path.unlink()


@pytest.fixture(scope="module")
def providers(hub: HubProcesses, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Providers]:
    """Provider servers, and tenants 'realco' (SMTP, Twilio, WhatsApp; WhatsApp through
    Twilio configured but not routed), 'sesco' (SES), 'snsco' (SMS through SNS) and
    'vonco' (SMS through Vonage)."""
    certificate: Certificate = self_signed_certificate(tmp_path_factory.mktemp("smtp-cert"))
    smtp = SmtpServer(certificate=certificate, users={SMTP_USER: SMTP_PASSWORD})
    smtp.start()
    loop = LoopThread()
    twilio, whatsapp = FakeTwilio(), FakeWhatsApp()
    twilio_whatsapp = FakeTwilioWhatsApp(auth_token="twilio-whatsapp-token-for-acceptance")
    loop.run(twilio.start())
    loop.run(whatsapp.start())
    loop.run(twilio_whatsapp.start())
    vonage = FakeVonage(api_secret="vonage-secret-for-acceptance")
    loop.run(vonage.start())
    moto_port = unused_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
    moto.start()
    moto_url = f"http://127.0.0.1:{moto_port}"
    try:
        hub.create_tenant("realco")
        for channel, provider in [
            ("email", "smtp"),
            ("sms", "twilio"),
            ("whatsapp", "whatsapp_cloud"),
        ]:
            assert hub.cli("tenants", "set-provider", "realco", channel, provider).returncode == 0
        configure(
            hub,
            "realco",
            "smtp",
            {
                "host": "127.0.0.1",
                "port": smtp.port,
                "security": "starttls",
                "username": SMTP_USER,
                "password": SMTP_PASSWORD,
                "ca_file": str(certificate.cert),
                "from_address": "notify@realco.example.com",
                "from_name": "RealCo",
            },
        )
        configure(
            hub,
            "realco",
            "twilio",
            twilio.credentials(),
        )
        configure(
            hub,
            "realco",
            "whatsapp_cloud",
            {
                "phone_number_id": whatsapp.phone_number_id,
                "access_token": whatsapp.access_token,
                "base_url": whatsapp.base_url,
                "api_version": "v21.0",
            },
        )
        configure(hub, "realco", "twilio_whatsapp", twilio_whatsapp.credentials())
        sesv2 = boto3.client(
            "sesv2",
            region_name="eu-west-1",
            endpoint_url=moto_url,
            aws_access_key_id=SES_KEY,
            aws_secret_access_key=SES_SECRET,
        )
        sesv2.create_email_identity(EmailIdentity="notify@sesco.example.com")
        sesv2.close()
        hub.create_tenant("sesco")
        assert hub.cli("tenants", "set-provider", "sesco", "email", "ses").returncode == 0
        configure(
            hub,
            "sesco",
            "ses",
            {
                "from_address": "notify@sesco.example.com",
                "region": "eu-west-1",
                "endpoint_url": moto_url,
                "access_key_id": SES_KEY,
                "secret_access_key": SES_SECRET,
            },
        )
        hub.create_tenant("snsco")
        assert hub.cli("tenants", "set-provider", "snsco", "sms", "sns").returncode == 0
        configure(
            hub,
            "snsco",
            "sns",
            {
                "region": "eu-west-1",
                "endpoint_url": moto_url,
                "access_key_id": SNS_KEY,
                "secret_access_key": SNS_SECRET,
                "sender_id": "SnsCo",
            },
        )
        hub.create_tenant("vonco")
        assert hub.cli("tenants", "set-provider", "vonco", "sms", "vonage").returncode == 0
        configure(hub, "vonco", "vonage", vonage.credentials())
        yield Providers(
            smtp,
            twilio,
            whatsapp,
            twilio_whatsapp,
            vonage,
            moto_url,
            (
                SMTP_PASSWORD,
                twilio.auth_token,
                whatsapp.access_token,
                twilio_whatsapp.auth_token,
                SES_SECRET,
                SNS_SECRET,
                vonage.api_secret,
            ),
        )
    finally:
        moto.stop()
        loop.run(twilio.stop())
        loop.run(whatsapp.stop())
        loop.run(twilio_whatsapp.stop())
        loop.run(vonage.stop())
        loop.stop()
        smtp.stop()


def send(
    client: httpx.Client, hub: HubProcesses, tenant: str, country: str, **extra: Any
) -> dict[str, Any]:
    h = hub.headers(tenant, X_Country=country, Idempotency_Key=str(uuid.uuid4()))
    resp = client.post("/v1/notifications", json=payload(country, **extra), headers=h)
    assert resp.status_code == 202, resp.text
    return wait_terminal(client, hub.headers(tenant), resp.json()["id"], timeout=30)


def test_providers_check_passes_for_every_configured_provider(
    hub: HubProcesses, providers: Providers
) -> None:
    done = hub.cli("providers", "check", "--tenant", "realco")
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("smtp", "twilio", "whatsapp_cloud", "twilio_whatsapp"):
        assert name in done.stdout
    assert not any(secret in done.stdout for secret in providers.secrets)
    assert providers.twilio.messages == []
    assert providers.twilio_whatsapp.messages == []
    assert [r.method for r in providers.twilio_whatsapp.requests] == ["GET"]
    assert providers.smtp.messages == []


def test_providers_check_proves_the_sns_credentials_without_sending(
    hub: HubProcesses, providers: Providers
) -> None:
    sent_before = len(moto_sms(providers.moto_url))
    done = hub.cli("providers", "check", "--tenant", "snsco")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "sns" in done.stdout
    assert "ok" in done.stdout
    assert SNS_SECRET not in done.stdout
    assert len(moto_sms(providers.moto_url)) == sent_before


def test_providers_check_fails_for_sns_that_cannot_be_reached(
    hub: HubProcesses, providers: Providers
) -> None:
    configure(
        hub,
        "snsco",
        "sns",
        {
            "region": "eu-west-1",
            "endpoint_url": f"http://127.0.0.1:{unused_port()}",
            "access_key_id": SNS_KEY,
            "secret_access_key": SNS_SECRET,
        },
    )
    try:
        done = hub.cli("providers", "check", "--tenant", "snsco")
    finally:
        configure(
            hub,
            "snsco",
            "sns",
            {
                "region": "eu-west-1",
                "endpoint_url": providers.moto_url,
                "access_key_id": SNS_KEY,
                "secret_access_key": SNS_SECRET,
                "sender_id": "SnsCo",
            },
        )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "failing" in done.stdout
    assert SNS_SECRET not in done.stdout


def moto_sms(moto_url: str) -> list[dict[str, Any]]:
    """The SMS moto's SNS recorded, from its data endpoint."""
    with httpx.Client() as http:
        data = http.get(f"{moto_url}/moto-api/data.json").json()
    found: list[dict[str, Any]] = data.get("sns", {}).get("SMS", [])
    return found


def test_email_goes_through_smtp_with_a_deterministic_message_id(
    hub: HubProcesses, client: httpx.Client, providers: Providers
) -> None:
    view = send(client, hub, "realco", "ES", subject="Your order", body="It shipped.")
    assert view["status"] == "DONE", view
    assert view["provider"] == "smtp"
    message_id = f"<{view['id']}@realco.example.com>"
    assert view["attempts"][0]["provider_message_id"] == message_id
    [mail] = [m for m in providers.smtp.messages if m.message["Message-ID"] == message_id]
    assert mail.tls
    assert mail.authenticated
    assert mail.rcpt_tos == ["ana@example.com"]
    assert mail.message["Subject"] == "Your order"
    assert "RealCo" in mail.message["From"]


def test_sms_goes_through_the_twilio_api(
    hub: HubProcesses, client: httpx.Client, providers: Providers
) -> None:
    view = send(client, hub, "realco", "US", body="Code 123456")
    assert view["status"] == "DONE", view
    assert view["provider"] == "twilio"
    sid = view["attempts"][0]["provider_message_id"]
    [sent] = [m for m in providers.twilio.messages if m["sid"] == sid]
    assert sent["to"] == "+5215512345678"
    assert sent["body"] == "Code 123456"


def test_whatsapp_goes_through_the_cloud_api(
    hub: HubProcesses, client: httpx.Client, providers: Providers
) -> None:
    view = send(client, hub, "realco", "MX", body="Hola")
    assert view["status"] == "DONE", view
    assert view["provider"] == "whatsapp_cloud"
    assert view["attempts"][0]["provider_message_id"].startswith("wamid.")
    sent = [m for m in providers.whatsapp.messages if m["biz_opaque_callback_data"] == view["id"]]
    assert sent
    assert sent[0]["to"] == "5215512345678"
    assert sent[0]["text"]["body"] == "Hola"


def test_email_goes_through_ses(
    hub: HubProcesses, client: httpx.Client, providers: Providers
) -> None:
    view = send(client, hub, "sesco", "FR")
    assert view["status"] == "DONE", view
    assert view["provider"] == "ses"
    assert view["attempts"][0]["provider_message_id"]


def test_a_twilio_rate_limit_is_retried_after_retry_after(
    hub: HubProcesses, client: httpx.Client, providers: Providers
) -> None:
    providers.twilio.queue_error(
        20429, status=429, message="Too Many Requests", headers={"Retry-After": "1"}
    )
    view = send(client, hub, "realco", "CA")
    assert view["status"] == "DONE", view
    first, second = view["attempts"]
    assert (first["outcome"], first["error_code"]) == ("transient", "20429")
    assert second["outcome"] == "delivered"
    waited = (
        datetime.fromisoformat(second["started_at"]) - datetime.fromisoformat(first["started_at"])
    ).total_seconds()
    assert waited >= 1.0


def test_an_undeliverable_whatsapp_message_is_dead_lettered(
    hub: HubProcesses, client: httpx.Client, providers: Providers
) -> None:
    providers.whatsapp.queue_error(131026, message="Message undeliverable")
    view = send(client, hub, "realco", "CO")
    assert view["status"] == "FAILED", view
    assert [(a["outcome"], a["error_code"]) for a in view["attempts"]] == [("permanent", "131026")]
    letters = json.loads(hub.cli("dlq", "list", "--tenant", "realco", "--json").stdout)
    assert view["id"] in [d["id"] for d in letters]


def test_bad_credentials_fail_as_configuration_without_leaking_them(
    hub: HubProcesses, client: httpx.Client, providers: Providers
) -> None:
    hub.create_tenant("badcreds")
    assert hub.cli("tenants", "set-provider", "badcreds", "sms", "twilio").returncode == 0
    configure(
        hub,
        "badcreds",
        "twilio",
        {
            "account_sid": providers.twilio.account_sid,
            "auth_token": "wrong-token-for-the-test",
            "from_number": "+15005550006",
            "base_url": providers.twilio.base_url,
        },
    )
    view = send(client, hub, "badcreds", "US")
    assert view["status"] == "FAILED"
    assert view["attempts"][0]["outcome"] == "configuration"
    assert view["attempts"][0]["error_code"] == "20003"
    text = json.dumps(view) + hub.cli("tenants", "show", "badcreds", "--json").stdout
    assert "wrong-token-for-the-test" not in text
    assert not any(secret in text for secret in providers.secrets)
    check = hub.cli("providers", "check", "--tenant", "badcreds")
    assert check.returncode == 1
    assert "wrong-token-for-the-test" not in check.stdout


def test_a_tenant_without_credentials_fails_as_configuration(
    hub: HubProcesses, client: httpx.Client
) -> None:
    hub.create_tenant("nocreds")
    assert hub.cli("tenants", "set-provider", "nocreds", "email", "smtp").returncode == 0
    view = send(client, hub, "nocreds", "IT")
    assert view["status"] == "FAILED"
    assert view["attempts"][0]["error_class"] == "provider_not_configured"


def test_no_credential_is_in_the_database_or_the_logs(
    hub: HubProcesses, client: httpx.Client, providers: Providers
) -> None:
    send(client, hub, "realco", "ES")  # the worker has decrypted and used them
    if hub.database_url.startswith("sqlite"):
        # The database, its WAL, and the workers' outcome journals beside it.
        files = [p for p in hub.workdir.glob("hub.db*") if p.is_file()]
        files += hub.workdir.glob("hub.db.outcomes/*")
        stored = b"".join(p.read_bytes() for p in files)
    else:
        dump = subprocess.run(
            ["pg_dump", "--data-only", hub.database_url],
            capture_output=True,
            check=True,
            timeout=60,
        )
        stored = dump.stdout
        assert b"provider_credentials" in stored  # the dump did reach the table
    logs = hub.logs().encode()
    for secret in providers.secrets:
        assert secret.encode() not in stored, "a credential is stored in plain"
        assert secret.encode() not in logs, "a credential is in the logs"


def test_rotating_the_master_key_under_load_loses_nothing(
    hub: HubProcesses, providers: Providers
) -> None:
    if not hub.database_url.startswith("sqlite"):
        pytest.skip(
            "PostgreSQL hubs here take IHUB_MASTER_KEY from the environment;"
            " rotation under load is exercised with the key file of the SQLite hub"
        )
    results: list[dict[str, Any]] = []

    def load() -> None:
        with httpx.Client(base_url=hub.base_url, timeout=30) as c:
            for i in range(30):
                results.append(send(c, hub, "realco", "US" if i % 2 else "ES"))

    sender = threading.Thread(target=load)
    sender.start()
    time.sleep(0.3)
    rotated = hub.cli("keys", "rotate-master")
    sender.join(timeout=120)
    assert rotated.returncode == 0, rotated.stderr
    assert "re-wrapped" in rotated.stdout
    assert len(results) == 30
    assert [v["status"] for v in results] == ["DONE"] * 30, results
    key_file = json.loads((hub.workdir / "hub.master.key").read_text())
    assert len(key_file["keys"]) == 2
    # A process started after the rotation reads the settings with the new key.
    check = hub.cli("providers", "check", "--tenant", "realco")
    assert check.returncode == 0, check.stdout


def test_sms_goes_through_sns(
    hub: HubProcesses, client: httpx.Client, providers: Providers
) -> None:
    view = send(client, hub, "snsco", "US", body="Code 654321")
    assert view["status"] == "DONE", view
    assert view["provider"] == "sns"
    message_id = view["attempts"][0]["provider_message_id"]
    [sent] = [m for m in moto_sms(providers.moto_url) if m["message_id"] == message_id]
    assert sent["message"] == "Code 654321"


def test_sms_goes_through_vonage_and_its_check_sends_nothing(
    hub: HubProcesses, client: httpx.Client, providers: Providers
) -> None:
    check = hub.cli("providers", "check", "--tenant", "vonco")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "vonage" in check.stdout
    assert providers.vonage.messages == []
    view = send(client, hub, "vonco", "US", body="Code 112233")
    assert view["status"] == "DONE", view
    assert view["provider"] == "vonage"
    [sent] = providers.vonage.messages
    assert (sent["text"], sent["client-ref"]) == ("Code 112233", view["id"])
    assert view["attempts"][0]["provider_message_id"] == sent["message-ids"][0]
    assert providers.vonage.api_secret not in json.dumps(view)
