"""Status webhooks on the AWS deployment, end to end on moto over HTTP.

A tenant registers its endpoint through the API Lambda; the API and worker
Lambdas write each change's event with it (ADR 0021); the scheduled webhooks
Lambda delivers them to a receiver over real HTTP that verifies every request
with the official ``standardwebhooks`` package. A webhooks Lambda killed
(SIGKILL) mid-request loses nothing: its claims lapse, and the next
invocation sends the same message again, under the same ``webhook-id``.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from aws.motoserver import FAKE_KEY, REGION, MotoAws, sqs_lambda_event
from integration_hub.domain import webhooks
from integration_hub.domain.webhooks import WebhookEvent
from integration_hub.entrypoints import aws_lambda
from integration_hub.service.tenants import create_tenant
from support import api_gateway_event
from webhooks.receiver import WebhookReceiver

T = TypeVar("T")
# A claim's lease is 3 x the request timeout + 15 s: a killed loop's claims lapse in 18 s.
REQUEST_TIMEOUT = 1.0


class ReceiverThread:
    """A ``WebhookReceiver`` serving on a loop of its own, so it answers while the test
    runs the Lambda handlers (on the Lambda container's loop) or waits on a process."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.receiver = WebhookReceiver(webhooks.new_secret())

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        self.call(self.receiver.start())
        return self.receiver

    def __exit__(self, *exc: object) -> None:
        self.call(self.receiver.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@dataclass(frozen=True)
class Context:
    """The part of Lambda's context the webhooks handler reads: it claims for ``seconds``."""

    seconds: float

    def get_remaining_time_in_millis(self) -> int:
        margin = REQUEST_TIMEOUT + aws_lambda.WEBHOOKS_MARGIN_SECONDS
        return int((self.seconds + margin) * 1000)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with ReceiverThread() as server:
        yield server


@pytest.fixture
def on_moto(moto_aws: MotoAws, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A Lambda container configured for DynamoDB + SQS + KMS, webhooks to 127.0.0.1."""
    sqs = moto_aws.boto3_client("sqs")
    name = "ihub-wh-" + uuid.uuid4().hex[:8]
    queue, dlq = moto_aws.queue_with_dlq(name, max_receive_count=5, VisibilityTimeout="2")
    url = f"dynamodb://{name}?queue={queue}&endpoint={moto_aws.endpoint}&region={REGION}"
    kms_key = moto_aws.boto3_client("kms").create_key(Description="ihub webhooks e2e")
    for var, value in {
        "IHUB_DATABASE_URL": url,
        "IHUB_KMS_KEY_ID": kms_key["KeyMetadata"]["KeyId"],
        "AWS_ENDPOINT_URL": moto_aws.endpoint,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": FAKE_KEY,
        "AWS_SECRET_ACCESS_KEY": FAKE_KEY,
        "IHUB_BACKOFF_BASE_SECONDS": "0.05",
        "IHUB_BACKOFF_CAP_SECONDS": "0.1",
        # The receiver listens on 127.0.0.1 over plain http.
        "IHUB_WEBHOOKS_ALLOW_HTTP": "true",
        "IHUB_WEBHOOKS_ALLOWED_NETWORKS": "127.0.0.0/8",
        "IHUB_WEBHOOKS_TIMEOUT_SECONDS": str(REQUEST_TIMEOUT),
        "IHUB_WEBHOOKS_POLL_INTERVAL_SECONDS": "0.1",
    }.items():
        monkeypatch.setenv(var, value)
    aws_lambda._state.clear()
    hub = aws_lambda._hub()
    loop = aws_lambda._loop()
    key = loop.run_until_complete(create_tenant(hub.store, hub.clock, "acme")).api_key
    try:
        yield {"key": key, "queue": queue, "sqs": sqs}
    finally:
        loop.run_until_complete(hub.close())
        loop.close()
        aws_lambda._state.clear()
        asyncio.set_event_loop(None)
        sqs.delete_queue(QueueUrl=queue)
        sqs.delete_queue(QueueUrl=dlq)


def api(env: dict[str, Any], method: str, path: str, body: object = None, **headers: str) -> Any:
    response = aws_lambda.api_handler(
        api_gateway_event(method, path, env["key"], body, **headers), None
    )
    assert response["statusCode"] < 300, response
    return json.loads(response["body"]) if response.get("body") else None


def register(env: dict[str, Any], receiver: WebhookReceiver) -> dict[str, Any]:
    """The tenant's endpoint at the receiver, made through the API Lambda; the
    receiver verifies with the secret shown once."""
    created: dict[str, Any] = api(
        env, "POST", "/v1/webhooks", {"url": f"{receiver.base_url}/hooks", "description": "e2e"}
    )
    receiver.secrets = [created["secret"]]
    return created


def submit(env: dict[str, Any], country: str, body: dict[str, Any]) -> str:
    headers = {"x-country": country, "idempotency-key": str(uuid.uuid4())}
    accepted = api(env, "POST", "/v1/notifications", body, **headers)
    notification_id: str = accepted["id"]
    return notification_id


def work(env: dict[str, Any], ids: set[str]) -> None:
    """SQS events into the worker Lambda until every notification is finished."""
    deadline = time.monotonic() + 60
    while ids:
        assert time.monotonic() < deadline, f"never finished: {ids}"
        records = sqs_lambda_event(env["sqs"], env["queue"], wait_seconds=1)["Records"]
        if records:
            aws_lambda.worker_handler({"Records": records}, None)
        for notification_id in list(ids):
            seen = api(env, "GET", f"/v1/notifications/{notification_id}")
            if seen["status"] in ("DONE", "FAILED"):
                ids.discard(notification_id)


def events_of(ids: list[str]) -> dict[str, list[WebhookEvent]]:
    hub, loop = aws_lambda._hub(), aws_lambda._loop()
    return {
        n: loop.run_until_complete(hub.webhook_store.list_events("acme", notification_id=n))
        for n in ids
    }


def first_arrivals(receiver: WebhookReceiver) -> dict[str, list[str]]:
    """Per notification, the webhook-ids in the order they first arrived, verified."""
    seen: set[str] = set()
    by_notification: dict[str, list[str]] = {}
    for verified in list(receiver.verified):
        if verified.webhook_id in seen:
            continue
        seen.add(verified.webhook_id)
        notification_id = verified.payload["data"]["id"]
        by_notification.setdefault(notification_id, []).append(verified.webhook_id)
    return by_notification


def deliver_until_all_arrived(receiver: WebhookReceiver, ids: list[str]) -> dict[str, Any]:
    """Scheduled invocations of the webhooks Lambda until every event arrived."""
    deadline = time.monotonic() + 90
    totals: dict[str, int] = {}
    while True:
        result = aws_lambda.webhooks_handler({"detail-type": "Scheduled Event"}, Context(2.0))
        for outcome, n in result["outcomes"].items():
            totals[outcome] = totals.get(outcome, 0) + n
        events = events_of(ids)
        wanted = {n: [e.id for e in found] for n, found in events.items()}
        if first_arrivals(receiver) == wanted:
            return {"wanted": wanted, "events": events, "outcomes": totals}
        assert time.monotonic() < deadline, (first_arrivals(receiver), wanted)


def test_the_scheduled_webhooks_lambda_delivers_every_event_signed_and_in_order(
    on_moto: dict[str, Any], receiver: WebhookReceiver
) -> None:
    env = on_moto
    register(env, receiver)
    ok = submit(env, "ES", {"recipient": {"email": "a@example.com"}, "body": "hi"})
    flaky = submit(
        env,
        "MX",
        {
            "recipient": {"phone": "+5215512345678"},
            "body": "hi",
            "metadata": {"sandbox": {"fail": "transient", "times": 1}},
        },
    )
    work(env, {ok, flaky})

    delivered = deliver_until_all_arrived(receiver, [ok, flaky])

    # Every event of each notification's life, in the order it happened, each
    # verified by standardwebhooks with the secret the API showed once.
    types = {n: [str(e.type) for e in found] for n, found in delivered["events"].items()}
    assert types[ok][:2] == ["notification.accepted", "notification.done"]
    assert types[flaky][:3] == [
        "notification.accepted",
        "notification.retrying",
        "notification.done",
    ]
    assert receiver.rejected == []
    arrived = {v.webhook_id: v.payload for v in receiver.verified}
    for notification_id, event_ids in delivered["wanted"].items():
        for event_id, kind in zip(event_ids, types[notification_id], strict=True):
            assert arrived[event_id]["type"] == kind
            assert arrived[event_id]["data"]["id"] == notification_id
            assert arrived[event_id]["data"]["tenant"] == "acme"
    assert delivered["outcomes"] == {"success": len(arrived)}
    # The next run has nothing left to send.
    again = aws_lambda.webhooks_handler({}, Context(0.5))
    assert again == {"attempts": 0, "outcomes": {}}


KILLED_LOOP = """
import sys
from integration_hub.entrypoints import aws_lambda

class Context:
    def get_remaining_time_in_millis(self) -> int:
        return 600_000

aws_lambda._hub("lambda-webhooks")
print("ready", flush=True)
aws_lambda.webhooks_handler({}, Context())
"""


def test_a_webhooks_lambda_killed_mid_request_loses_nothing(
    on_moto: dict[str, Any], receiver: WebhookReceiver
) -> None:
    env = on_moto
    register(env, receiver)
    ids = [
        submit(env, "ES", {"recipient": {"email": f"k{i}@example.com"}, "body": "hi"})
        for i in range(3)
    ]
    work(env, set(ids))
    for _ in ids:  # the first request for each notification hangs
        receiver.queue_delay(120)
    container = subprocess.Popen(
        [sys.executable, "-c", KILLED_LOOP],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert container.stdout is not None
        assert container.stdout.readline().strip() == "ready", container.stderr
        deadline = time.monotonic() + 60
        while len(receiver.verified) < len(ids):
            assert container.poll() is None, container.communicate()
            assert time.monotonic() < deadline, "the container never sent its webhooks"
            time.sleep(0.05)
    finally:
        container.send_signal(signal.SIGKILL)  # in the middle of its requests
        container.communicate(timeout=30)
    in_flight = [v.webhook_id for v in receiver.verified]

    # Its claims lapse (the lease); the next scheduled invocations send them again.
    delivered = deliver_until_all_arrived(receiver, ids)

    assert receiver.rejected == []
    sent_twice = [v.webhook_id for v in receiver.verified if v.webhook_id in in_flight]
    # Every request the killed container had in flight came again, same webhook-id.
    assert sorted(set(sent_twice)) == sorted(in_flight)
    assert all(sent_twice.count(i) == 2 for i in in_flight), sent_twice
    assert sum(len(v) for v in delivered["wanted"].values()) >= 2 * len(ids)
