"""Delivery receipts end to end on the AWS deployment, on moto: the worker Lambda sends
through the real adapters (Twilio and WhatsApp fakes over HTTP, SES on moto), and each
fake's signed callback reaches the API Lambda as API Gateway would hand it over.

The fakes sign exactly as for the other backends (tests/providers/fake_*.py);
instead of posting, they hand the signed request over (``take``) and the test
turns it into an API Gateway HTTP API event for ``aws_lambda.api_handler``:
the hub sees the body byte for byte and the headers as sent. The SNS
certificate is fetched over HTTPS from the fake through the production code
path (IHUB_SNS_TEST_CA_FILE and IHUB_SNS_TEST_CONNECT_TO).
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from aws.motoserver import FAKE_KEY, REGION, MotoAws, sqs_lambda_event
from callback_hubs import LoopThread
from integration_hub.entrypoints import aws_lambda
from integration_hub.service.tenants import create_tenant
from providers.fake_callbacks import Reporter, Step
from providers.fake_sns import FakeSns
from providers.fake_twilio import FakeTwilio
from providers.fake_whatsapp import FakeWhatsApp
from support import api_gateway_event

ADMIN_TOKEN = "receipts-e2e-admin-token"
PUBLIC_URL = "https://hooks.example.com"


@dataclass
class Aws:
    """The Lambda container's hub on moto, and the fakes that call it back."""

    key: str
    queue: str
    sqs: Any
    moto: MotoAws
    loop: LoopThread
    twilio: FakeTwilio
    whatsapp: FakeWhatsApp
    sns: FakeSns


def decoded(response: dict[str, Any]) -> tuple[int, Any]:
    """Status and JSON body of a Lambda proxy response (Mangum base64s problem+json)."""
    raw: str | bytes = response.get("body") or ""
    if response.get("isBase64Encoded"):
        raw = base64.b64decode(raw)
    return response["statusCode"], json.loads(raw) if raw else None


def admin(method: str, path: str, body: object = None) -> int:
    """An admin API call through the API handler: its status."""
    event = api_gateway_event(method, path, ADMIN_TOKEN, body)
    status, _ = decoded(aws_lambda.api_handler(event, None))
    return status


def callback_event(url: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    """A provider's callback as API Gateway (HTTP API, payload 2.0) hands it to the Lambda."""
    parts = urlsplit(url)
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": parts.path,
        "rawQueryString": parts.query,
        "headers": {name.lower(): value for name, value in headers.items()},
        "isBase64Encoded": True,
        "body": base64.b64encode(body).decode(),
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api",
            "domainName": parts.hostname,
            "http": {
                "method": "POST",
                "path": parts.path,
                "protocol": "HTTP/1.1",
                "sourceIp": "198.51.100.7",
                "userAgent": headers.get("User-Agent", "provider"),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "timeEpoch": 0,
        },
    }


def deliver(fake: Reporter) -> list[int]:
    """Hand every receipt the fake holds to the API Lambda: the statuses it answered."""
    taken = fake.take()
    assert taken, "the fake had no callback to send"
    statuses = []
    for url, body, headers in taken:
        assert url.startswith(f"{PUBLIC_URL}/v1/receipts/"), url
        status, answer = decoded(aws_lambda.api_handler(callback_event(url, body, headers), None))
        assert 200 <= status < 300, (status, answer)
        statuses.append(status)
    return statuses


def submit(env: Aws, country: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST a notification through API Gateway: the Lambda proxy response, decoded."""
    event = api_gateway_event(
        "POST",
        "/v1/notifications",
        env.key,
        body,
        **{"x-country": country, "idempotency-key": str(uuid.uuid4())},
    )
    status, answer = decoded(aws_lambda.api_handler(event, None))
    return {**(answer or {}), "http_status": status}


def view(env: Aws, notification_id: str) -> dict[str, Any]:
    """The notification as tenant acme sees it."""
    event = api_gateway_event("GET", f"/v1/notifications/{notification_id}", env.key)
    status, answer = decoded(aws_lambda.api_handler(event, None))
    assert status == 200, answer
    result: dict[str, Any] = answer
    return result


def send(env: Aws, country: str, body: dict[str, Any]) -> dict[str, Any]:
    """Submit, hand the SQS message to the worker Lambda, and return the finished view."""
    accepted = submit(env, country, body)
    assert accepted["http_status"] == 202, accepted
    records = sqs_lambda_event(env.sqs, env.queue, wait_seconds=2)["Records"]
    assert [r["body"] for r in records] == [accepted["id"]]
    assert aws_lambda.worker_handler({"Records": records}, None) == {"batchItemFailures": []}
    done = view(env, accepted["id"])
    assert done["status"] == "DONE", json.dumps(done["attempts"])
    return done


@pytest.fixture
def lambda_with_receipts(
    moto_aws: MotoAws, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Aws]:
    """A Lambda container on DynamoDB + SQS with a public URL, and the three fakes."""
    loop = LoopThread()
    twilio, whatsapp = FakeTwilio(), FakeWhatsApp()
    sns = FakeSns(tmp_path, region=REGION, signature_version="2")
    for fake in (twilio, whatsapp, sns):
        fake.hold = True
    loop.run(twilio.start())
    loop.run(whatsapp.start())
    loop.run(sns.start())
    whatsapp.webhook_url = f"{PUBLIC_URL}/v1/receipts/whatsapp/acme"
    sns.endpoint = f"{PUBLIC_URL}/v1/receipts/ses/acme"
    sqs = moto_aws.boto3_client("sqs")
    name = "ihub-rcpt-" + uuid.uuid4().hex[:8]
    queue, dlq = moto_aws.queue_with_dlq(name, max_receive_count=2, VisibilityTimeout="1")
    url = f"dynamodb://{name}?queue={queue}&endpoint={moto_aws.endpoint}&region={REGION}"
    kms_key = moto_aws.boto3_client("kms").create_key(Description="ihub receipts e2e")
    for var, value in {
        "IHUB_DATABASE_URL": url,
        "IHUB_ADMIN_TOKEN": ADMIN_TOKEN,
        "IHUB_KMS_KEY_ID": kms_key["KeyMetadata"]["KeyId"],
        "IHUB_PUBLIC_URL": PUBLIC_URL,
        "IHUB_SNS_TEST_CA_FILE": str(sns.ca_file),
        "IHUB_SNS_TEST_CONNECT_TO": sns.connect_to,
        "AWS_ENDPOINT_URL": moto_aws.endpoint,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": FAKE_KEY,
        "AWS_SECRET_ACCESS_KEY": FAKE_KEY,
    }.items():
        monkeypatch.setenv(var, value)
    aws_lambda._state.clear()
    hub = aws_lambda._hub()
    lambda_loop = aws_lambda._loop()
    key = lambda_loop.run_until_complete(create_tenant(hub.store, hub.clock, "acme")).api_key
    try:
        yield Aws(key, queue, sqs, moto_aws, loop, twilio, whatsapp, sns)
    finally:
        lambda_loop.run_until_complete(hub.close())
        lambda_loop.close()
        aws_lambda._state.clear()
        asyncio.set_event_loop(None)
        sqs.delete_queue(QueueUrl=queue)
        sqs.delete_queue(QueueUrl=dlq)
        for fake in (twilio, whatsapp, sns):
            loop.run(fake.stop())
        loop.stop()


def test_twilio_receipts_through_api_gateway_and_21610_suppresses(
    lambda_with_receipts: Aws,
) -> None:
    env = lambda_with_receipts
    assert (
        admin("PUT", "/admin/v1/tenants/acme/credentials/twilio", env.twilio.credentials()) == 204
    )
    assert admin("PUT", "/admin/v1/tenants/acme/channels/sms", {"provider": "twilio"}) == 200
    env.twilio.script(Step("delivered"), Step("sent"), Step("delivered"))
    done = send(env, "US", {"recipient": {"phone": "+12025550143"}, "body": "code 1"})
    assert env.twilio.requests[-1].form["StatusCallback"] == f"{PUBLIC_URL}/v1/receipts/twilio/acme"
    assert done["delivery"]["state"] == "sent"

    assert deliver(env.twilio) == [204, 204, 204]

    delivery = view(env, done["id"])["delivery"]
    assert delivery["state"] == "delivered", delivery
    assert [e["raw_status"] for e in delivery["events"]] == ["delivered", "sent"]

    env.twilio.script(Step("undelivered", error_code="21610"))
    stopped = send(env, "US", {"recipient": {"phone": "+12025550144"}, "body": "code 2"})
    deliver(env.twilio)
    assert view(env, stopped["id"])["delivery"]["state"] == "undelivered"
    again = submit(env, "US", {"recipient": {"phone": "+12025550144"}, "body": "code 3"})
    assert again["http_status"] == 422, again
    assert again["type"].endswith(":suppressed")
    assert (again["channel"], again["reason"]) == ("sms", "opted_out")


def test_whatsapp_read_before_delivered_through_api_gateway_ends_read(
    lambda_with_receipts: Aws,
) -> None:
    env = lambda_with_receipts
    settings = {
        "phone_number_id": env.whatsapp.phone_number_id,
        "access_token": env.whatsapp.access_token,
        "base_url": env.whatsapp.base_url,
        "api_version": "v21.0",
        "app_secret": env.whatsapp.app_secret,
        "webhook_verify_token": "verify-token-of-the-aws-e2e",
    }
    assert admin("PUT", "/admin/v1/tenants/acme/credentials/whatsapp_cloud", settings) == 204
    assert (
        admin("PUT", "/admin/v1/tenants/acme/channels/whatsapp", {"provider": "whatsapp_cloud"})
        == 200
    )
    env.whatsapp.script(Step("read"), Step("delivered"), Step("read"))
    done = send(env, "MX", {"recipient": {"phone": "+5215512345678"}, "body": "hola"})

    deliver(env.whatsapp)

    delivery = view(env, done["id"])["delivery"]
    assert delivery["state"] == "read", delivery
    assert [e["raw_status"] for e in delivery["events"]] == ["read", "delivered"]


def test_an_ses_bounce_through_sns_and_api_gateway_suppresses_the_next_email(
    lambda_with_receipts: Aws,
) -> None:
    env = lambda_with_receipts
    sender = f"hub-{uuid.uuid4().hex[:8]}@example.com"
    env.moto.boto3_client("sesv2").create_email_identity(EmailIdentity=sender)
    settings = {
        "from_address": sender,
        "region": REGION,
        "endpoint_url": env.moto.endpoint,
        "access_key_id": FAKE_KEY,
        "secret_access_key": "ses-secret-" + uuid.uuid4().hex,
        "receipt_topic_arns": [env.sns.topic_arn],
    }
    assert admin("PUT", "/admin/v1/tenants/acme/credentials/ses", settings) == 204
    assert admin("PUT", "/admin/v1/tenants/acme/channels/email", {"provider": "ses"}) == 200
    env.loop.run(env.sns.watch_moto(env.moto.endpoint, report=False))
    address = f"gone.{uuid.uuid4().hex[:8]}@example.org"
    email = {"recipient": {"email": address}, "subject": "Hi", "body": "Hola"}
    done = send(env, "ES", email)
    env.sns.script(Step("Delivery"), Step("Bounce"), Step("Bounce"))
    assert env.loop.run(env.sns.watch_moto(env.moto.endpoint)) == 1

    assert deliver(env.sns) == [200, 200, 200]

    delivery = view(env, done["id"])["delivery"]
    assert delivery["state"] == "bounced", delivery
    assert [e["raw_status"] for e in delivery["events"]] == ["Delivery", "Bounce/Permanent"]
    again = submit(env, "ES", {**email, "recipient": {"email": address.upper()}})
    assert again["http_status"] == 422, again
    assert (again["channel"], again["reason"]) == ("email", "hard_bounce")
