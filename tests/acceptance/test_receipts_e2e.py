"""Delivery receipts end to end, on SQLite and PostgreSQL, with the hub as real processes.

The worker sends through the real adapters to the local fakes (Twilio,
WhatsApp Cloud API, SES on moto); each fake then calls the hub's public
receipt endpoint the way the provider does, signed with the tenant's secret
(Twilio: X-Twilio-Signature by twilio's RequestValidator over the URL the
adapter gave as StatusCallback; Meta: X-Hub-Signature-256; SES: an SNS
notification signed with a real certificate under a test CA, which the hub
fetches over HTTPS through the production code path). The notification's
delivery state follows; a bounce or a STOP suppresses the next send.

Callbacks are held until the worker has recorded the send (``hold`` and
``flush``): the tests depend on no timing.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import httpx
import pytest
from moto.server import ThreadedMotoServer

from callback_hubs import LoopThread, configure
from hubs import BACKENDS, HubProcesses, make_hub, payload, wait_terminal
from providers.fake_callbacks import SentCallback, Step, answered
from providers.fake_http import unused_port
from providers.fake_sns import FakeSns
from providers.fake_twilio import FakeTwilio
from providers.fake_whatsapp import FakeWhatsApp

SES_REGION = "eu-west-1"
SES_KEY, SES_SECRET = "AKIAFAKERECEIPTSE2E", "ses-secret-for-the-receipts-e2e-test"
SES_SENDER = "notify@receipts.example.com"


@dataclass
class Stack:
    """A hub with its public URL, the fakes that call it back, and the tenants they serve."""

    hub: HubProcesses
    client: httpx.Client
    loop: LoopThread
    twilio: FakeTwilio
    whatsapp: FakeWhatsApp
    sns: FakeSns
    moto_url: str

    def send(self, tenant: str, country: str, **extra: Any) -> dict[str, Any]:
        """Post a notification and wait until the worker is done with it."""
        headers = self.hub.headers(tenant, X_Country=country, Idempotency_Key=str(uuid.uuid4()))
        resp = self.client.post(
            "/v1/notifications", json=payload(country, **extra), headers=headers
        )
        assert resp.status_code == 202, resp.text
        view = wait_terminal(self.client, self.hub.headers(tenant), resp.json()["id"])
        assert view["status"] == "DONE", view
        return view

    def refused(self, tenant: str, country: str, **extra: Any) -> httpx.Response:
        """Post a notification that must be refused."""
        headers = self.hub.headers(tenant, X_Country=country, Idempotency_Key=str(uuid.uuid4()))
        return self.client.post(
            "/v1/notifications", json=payload(country, **extra), headers=headers
        )

    def view(self, tenant: str, notification_id: str) -> dict[str, Any]:
        """The notification as its tenant sees it."""
        resp = self.client.get(
            f"/v1/notifications/{notification_id}", headers=self.hub.headers(tenant)
        )
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    def delivery(
        self, tenant: str, notification_id: str, state: str, timeout: float = 20
    ) -> dict[str, Any]:
        """The notification's delivery once it is ``state`` (or as it is at the timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            delivery: dict[str, Any] = self.view(tenant, notification_id)["delivery"] or {}
            if delivery.get("state") == state or time.monotonic() > deadline:
                return delivery
            time.sleep(0.05)


def flush(stack: Stack, fake: FakeTwilio | FakeWhatsApp | FakeSns) -> list[SentCallback]:
    """Send what the fake holds; every callback must have been accepted."""
    sent = stack.loop.run(fake.flush())
    assert sent, "the fake had no callback to send"
    assert all(200 <= c.status < 300 for c in sent), answered(sent)
    return sent


def phone() -> str:
    """A US number of its own for each test, so one test's suppression is not another's."""
    return "+1202555" + f"{secrets.randbelow(10_000):04d}"


@pytest.fixture(scope="module", params=BACKENDS)
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    workdir: Path = tmp_path_factory.mktemp("receipts-e2e")
    loop = LoopThread()
    twilio, whatsapp = FakeTwilio(), FakeWhatsApp()
    sns = FakeSns(workdir, region=SES_REGION, signature_version="1")
    for fake in (twilio, whatsapp, sns):
        fake.hold = True
    loop.run(twilio.start())
    loop.run(whatsapp.start())
    loop.run(sns.start())
    moto_port = unused_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
    moto.start()
    moto_url = f"http://127.0.0.1:{moto_port}"
    hub = make_hub(workdir, request.param)
    hub.env.update(
        {
            "IHUB_PUBLIC_URL": hub.base_url,
            "IHUB_SNS_TEST_CA_FILE": str(sns.ca_file),
            "IHUB_SNS_TEST_CONNECT_TO": sns.connect_to,
        }
    )
    try:
        hub.create_tenant("rcpt")
        for channel, provider in [("sms", "twilio"), ("whatsapp", "whatsapp_cloud")]:
            assert hub.cli("tenants", "set-provider", "rcpt", channel, provider).returncode == 0
        configure(hub, "rcpt", "twilio", twilio.credentials())
        configure(
            hub,
            "rcpt",
            "whatsapp_cloud",
            {
                "phone_number_id": whatsapp.phone_number_id,
                "access_token": whatsapp.access_token,
                "base_url": whatsapp.base_url,
                "api_version": "v21.0",
                "app_secret": whatsapp.app_secret,
                "webhook_verify_token": "verify-token-of-the-receipts-e2e",
            },
        )
        whatsapp.webhook_url = f"{hub.base_url}/v1/receipts/whatsapp/rcpt"
        sesv2 = boto3.client(
            "sesv2",
            region_name=SES_REGION,
            endpoint_url=moto_url,
            aws_access_key_id=SES_KEY,
            aws_secret_access_key=SES_SECRET,
        )
        sesv2.create_email_identity(EmailIdentity=SES_SENDER)
        sesv2.close()
        hub.create_tenant("rcptses")
        assert hub.cli("tenants", "set-provider", "rcptses", "email", "ses").returncode == 0
        configure(
            hub,
            "rcptses",
            "ses",
            {
                "from_address": SES_SENDER,
                "region": SES_REGION,
                "endpoint_url": moto_url,
                "access_key_id": SES_KEY,
                "secret_access_key": SES_SECRET,
                "receipt_topic_arns": [sns.topic_arn],
            },
        )
        sns.endpoint = f"{hub.base_url}/v1/receipts/ses/rcptses"
        hub.create_tenant("sandy")  # the sandbox on every channel
        hub.start_api()
        hub.start_worker()
        with httpx.Client(base_url=hub.base_url, timeout=10) as client:
            yield Stack(hub, client, loop, twilio, whatsapp, sns, moto_url)
    finally:
        hub.stop()
        moto.stop()
        for fake in (twilio, whatsapp, sns):
            loop.run(fake.stop())
        loop.stop()


def test_twilio_sent_delivered_and_a_duplicate_end_delivered_with_two_events(
    stack: Stack,
) -> None:
    stack.twilio.script(Step("sent"), Step("delivered"), Step("delivered"))
    view = stack.send("rcpt", "US", recipient={"phone": phone()})
    sid = view["attempts"][0]["provider_message_id"]
    [message] = [m for m in stack.twilio.messages if m["sid"] == sid]
    [request] = [r for r in stack.twilio.requests if r.form.get("To") == message["to"]]
    assert request.form["StatusCallback"] == f"{stack.hub.base_url}/v1/receipts/twilio/rcpt"
    assert view["delivery"]["state"] == "sent"

    flush(stack, stack.twilio)

    delivery = stack.delivery("rcpt", view["id"], "delivered")
    assert delivery["state"] == "delivered", delivery
    assert [(e["provider"], e["raw_status"]) for e in delivery["events"]] == [
        ("twilio", "sent"),
        ("twilio", "delivered"),
    ], delivery


def test_twilio_delivered_before_sent_stays_delivered(stack: Stack) -> None:
    stack.twilio.script(Step("delivered"), Step("sent"), Step("sent"))
    view = stack.send("rcpt", "US", recipient={"phone": phone()})

    flush(stack, stack.twilio)

    delivery = stack.delivery("rcpt", view["id"], "delivered")
    assert delivery["state"] == "delivered", delivery
    assert [e["raw_status"] for e in delivery["events"]] == ["delivered", "sent"]


def test_twilio_21610_suppresses_the_next_sms_to_that_number(stack: Stack) -> None:
    number = phone()
    stack.twilio.script(Step("sent"), Step("undelivered", error_code="21610"))
    view = stack.send("rcpt", "US", recipient={"phone": number})

    flush(stack, stack.twilio)

    delivery = stack.delivery("rcpt", view["id"], "undelivered")
    assert delivery["state"] == "undelivered", delivery
    assert delivery["events"][-1]["error_code"] == "21610"
    again = stack.refused("rcpt", "US", recipient={"phone": number})
    assert again.status_code == 422, again.text
    problem = again.json()
    assert again.headers["content-type"].startswith("application/problem+json")
    assert problem["type"].endswith(":suppressed")
    assert problem["channel"] == "sms"
    assert problem["reason"] == "opted_out"
    # Another number of the same tenant is not affected.
    stack.send("rcpt", "US", recipient={"phone": phone()})


def test_whatsapp_read_before_delivered_and_duplicates_end_read(stack: Stack) -> None:
    stack.whatsapp.script(Step("sent"), Step("read"), Step("delivered"), Step("read"))
    view = stack.send("rcpt", "MX", recipient={"phone": "+5215512345678"})
    assert view["delivery"]["state"] == "sent"

    flush(stack, stack.whatsapp)

    delivery = stack.delivery("rcpt", view["id"], "read")
    assert delivery["state"] == "read", delivery
    assert [e["raw_status"] for e in delivery["events"]] == ["sent", "read", "delivered"]
    assert {e["provider"] for e in delivery["events"]} == {"whatsapp_cloud"}


def test_whatsapp_not_a_whatsapp_user_suppresses_the_next_message(stack: Stack) -> None:
    number = "+5215512340001"
    stack.whatsapp.script(Step("failed", error_code="131026"))
    view = stack.send("rcpt", "MX", recipient={"phone": number})

    flush(stack, stack.whatsapp)

    delivery = stack.delivery("rcpt", view["id"], "undelivered")
    assert delivery["state"] == "undelivered", delivery
    assert delivery["events"][0]["error_code"] == "131026"
    again = stack.refused("rcpt", "MX", recipient={"phone": number})
    assert again.status_code == 422, again.text
    assert (again.json()["channel"], again.json()["reason"]) == ("whatsapp", "not_on_whatsapp")


def test_whatsapp_statuses_of_two_messages_in_one_payload(stack: Stack) -> None:
    stack.whatsapp.script(Step("delivered"))
    stack.whatsapp.script(Step("read"))
    first = stack.send("rcpt", "MX", recipient={"phone": "+5215512345679"})
    second = stack.send("rcpt", "AR", recipient={"phone": "+5491123456789"})

    sent = stack.loop.run(stack.whatsapp.flush_batch())

    assert sent is not None
    assert sent.status == 200, sent.answer
    assert stack.delivery("rcpt", first["id"], "delivered")["state"] == "delivered"
    assert stack.delivery("rcpt", second["id"], "read")["state"] == "read"


def test_ses_delivery_through_sns_ends_delivered(stack: Stack) -> None:
    stack.loop.run(stack.sns.watch_moto(stack.moto_url, report=False))
    address = f"ana.{uuid.uuid4().hex[:8]}@example.com"
    view = stack.send("rcptses", "FR", recipient={"email": address})
    stack.sns.script(Step("Delivery"))

    assert stack.loop.run(stack.sns.watch_moto(stack.moto_url)) == 1
    flush(stack, stack.sns)

    delivery = stack.delivery("rcptses", view["id"], "delivered")
    assert delivery["state"] == "delivered", delivery
    assert delivery["events"][0]["provider"] == "ses"


def test_an_ses_hard_bounce_ends_bounced_and_suppresses_the_next_send(stack: Stack) -> None:
    stack.loop.run(stack.sns.watch_moto(stack.moto_url, report=False))
    address = f"gone.{uuid.uuid4().hex[:8]}@example.com"
    view = stack.send("rcptses", "FR", recipient={"email": address})
    # Delivered by the receiving server, then bounced, reported out of order and twice.
    stack.sns.script(Step("Bounce"), Step("Delivery"), Step("Bounce"))
    stack.loop.run(stack.sns.watch_moto(stack.moto_url))

    flush(stack, stack.sns)

    delivery = stack.delivery("rcptses", view["id"], "bounced")
    assert delivery["state"] == "bounced", delivery
    assert [e["raw_status"] for e in delivery["events"]] == ["Bounce/Permanent", "Delivery"]
    again = stack.refused("rcptses", "FR", recipient={"email": address.upper()})
    assert again.status_code == 422, again.text
    assert again.json()["reason"] == "hard_bounce"
    assert again.json()["channel"] == "email"


def test_the_sns_subscription_is_confirmed_through_the_production_path(stack: Stack) -> None:
    before = len(stack.sns.confirmations)

    sent = stack.loop.run(stack.sns.confirm_subscription())

    assert sent.status == 200, sent.answer
    assert len(stack.sns.confirmations) == before + 1
    assert stack.sns.confirmations[-1]["TopicArn"] == stack.sns.topic_arn


def test_a_callback_signed_with_another_token_changes_nothing(stack: Stack) -> None:
    stack.twilio.script(Step("delivered"))
    view = stack.send("rcpt", "US", recipient={"phone": phone()})
    real_token = stack.twilio.auth_token
    stack.twilio.auth_token = "not-the-tenants-auth-token"
    try:
        [sent] = stack.loop.run(stack.twilio.flush())
    finally:
        stack.twilio.auth_token = real_token

    assert sent.status == 403, sent.answer
    assert json.loads(sent.answer)["type"].endswith(":receipt-rejected")
    assert stack.view("rcpt", view["id"])["delivery"]["state"] == "sent"


def test_the_sandbox_in_the_worker_reports_delivered_and_read(stack: Stack) -> None:
    sms = stack.send("sandy", "US")
    whatsapp = stack.send("sandy", "MX")

    assert stack.delivery("sandy", sms["id"], "delivered")["state"] == "delivered"
    delivery = stack.delivery("sandy", whatsapp["id"], "read")
    assert delivery["state"] == "read", delivery
    assert [(e["provider"], e["state"]) for e in delivery["events"]] == [
        ("sandbox", "delivered"),
        ("sandbox", "read"),
    ]
