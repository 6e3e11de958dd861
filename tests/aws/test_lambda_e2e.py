"""The AWS deployment end to end on moto over HTTP: an API Gateway event into the API
handler, DynamoDB and SQS, SQS events into the worker handler, SES (credentials sealed
with KMS), and SQS's own DLQ: filled by the redrive policy, listed and redriven by
``ihub dlq --queue`` and the admin API; the scheduled reconciler."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from aws.motoserver import FAKE_KEY, REGION, MotoAws, sqs_lambda_event
from integration_hub.adapters.aws import items, tables
from integration_hub.adapters.aws.dynamodb import DynamoStore
from integration_hub.domain.models import Attempt, Outcome, from_epoch
from integration_hub.domain.receipts import DeliveryState, Receipt
from integration_hub.domain.status import Status
from integration_hub.entrypoints import aws_lambda, cli
from integration_hub.service.tenants import create_tenant
from support import Backend, ManualClock, accept, api_gateway_event, notification

ADMIN_TOKEN = "e2e-admin-token"


@pytest.fixture
def lambda_on_moto(moto_aws: MotoAws, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A Lambda container configured for DynamoDB + SQS (with a DLQ after 2 receives)."""
    sqs = moto_aws.boto3_client("sqs")
    name = "ihub-e2e-" + uuid.uuid4().hex[:8]
    queue, dlq = moto_aws.queue_with_dlq(name, max_receive_count=2, VisibilityTimeout="1")
    url = f"dynamodb://{name}?queue={queue}&endpoint={moto_aws.endpoint}&region={REGION}"
    kms = moto_aws.boto3_client("kms")
    kms_key = kms.create_key(Description="ihub e2e")["KeyMetadata"]["KeyId"]
    for var, value in {
        "IHUB_DATABASE_URL": url,
        "IHUB_ADMIN_TOKEN": ADMIN_TOKEN,
        "IHUB_RECONCILE_AFTER_SECONDS": "1",
        "IHUB_KMS_KEY_ID": kms_key,
        "AWS_ENDPOINT_URL": moto_aws.endpoint,  # KMS: the standard AWS settings
        "AWS_DEFAULT_REGION": REGION,  # as Lambda sets it
        "IHUB_BACKOFF_BASE_SECONDS": "0.05",
        "IHUB_BACKOFF_CAP_SECONDS": "0.1",
        "AWS_ACCESS_KEY_ID": FAKE_KEY,
        "AWS_SECRET_ACCESS_KEY": FAKE_KEY,
    }.items():
        monkeypatch.setenv(var, value)
    aws_lambda._state.clear()
    hub = aws_lambda._hub()
    loop = aws_lambda._loop()
    key = loop.run_until_complete(create_tenant(hub.store, hub.clock, "acme")).api_key
    try:
        yield {"key": key, "queue": queue, "dlq": dlq, "sqs": sqs}
    finally:
        loop.run_until_complete(hub.close())
        loop.close()
        aws_lambda._state.clear()
        asyncio.set_event_loop(None)
        sqs.delete_queue(QueueUrl=queue)
        sqs.delete_queue(QueueUrl=dlq)


def admin(method: str, path: str, body: object = None) -> tuple[int, Any]:
    """An admin API call through the API handler: status and JSON body."""
    response = aws_lambda.api_handler(api_gateway_event(method, path, ADMIN_TOKEN, body), None)
    raw: str | bytes = response["body"]
    if response.get("isBase64Encoded"):  # Mangum encodes problem+json as binary
        raw = base64.b64decode(raw)
    return response["statusCode"], json.loads(raw) if raw else None


def ihub(*args: str) -> Result:
    """``ihub`` in this process, configured by the fixture's environment."""
    try:
        return CliRunner().invoke(cli.app, list(args))
    finally:
        # asyncio.run unset the current loop, which the Lambda container (Mangum) uses.
        asyncio.set_event_loop(aws_lambda._loop())


def sqs_event(env: dict[str, Any], wait: int = 2) -> dict[str, Any]:
    """What the event source mapping would hand the worker: a real SQS receive."""
    return sqs_lambda_event(env["sqs"], env["queue"], wait_seconds=wait)


def submit(env: dict[str, Any], country: str, body: dict[str, Any]) -> str:
    event = api_gateway_event(
        "POST",
        "/v1/notifications",
        env["key"],
        body,
        **{"x-country": country, "idempotency-key": str(uuid.uuid4())},
    )
    response = aws_lambda.api_handler(event, None)
    assert response["statusCode"] == 202, response
    notification_id: str = json.loads(response["body"])["id"]
    return notification_id


def status(env: dict[str, Any], notification_id: str) -> dict[str, Any]:
    view = aws_lambda.api_handler(
        api_gateway_event("GET", f"/v1/notifications/{notification_id}", env["key"]), None
    )
    result: dict[str, Any] = json.loads(view["body"])
    return result


def test_api_gateway_to_dynamodb_sqs_worker_and_done(lambda_on_moto: dict[str, Any]) -> None:
    env = lambda_on_moto
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
    event = sqs_event(env)
    assert {r["body"] for r in event["Records"]} == {ok, flaky}
    by_body = {r["body"]: r["messageId"] for r in event["Records"]}
    result = aws_lambda.worker_handler(event, None)
    # Partial batch response: only the retry comes back, the delivered one is gone.
    assert result == {"batchItemFailures": [{"itemIdentifier": by_body[flaky]}]}
    assert status(env, ok)["status"] == "DONE"
    retry = sqs_event(env, wait=5)
    assert [r["body"] for r in retry["Records"]] == [flaky]
    assert aws_lambda.worker_handler(retry, None) == {"batchItemFailures": []}
    done = status(env, flaky)
    assert [a["outcome"] for a in done["attempts"]] == ["transient", "delivered"]
    # The API and worker Lambdas wrote each change's webhook event with it (ADR 0021);
    # after done, the sandbox's own receipts (delivered, maybe read by now) follow.
    hub, loop = aws_lambda._hub(), aws_lambda._loop()
    for notification_id, ours in (
        (ok, ["notification.accepted", "notification.done"]),
        (flaky, ["notification.accepted", "notification.retrying", "notification.done"]),
    ):
        told = [
            str(e.type)
            for e in loop.run_until_complete(
                hub.webhook_store.list_events("acme", notification_id=notification_id)
            )
        ]
        assert told[: len(ours)] == ours
        receipts = told[len(ours) :]
        assert receipts == ["notification.delivered", "notification.read"][: len(receipts)]


def test_an_email_goes_from_api_gateway_through_sqs_and_the_worker_to_ses(
    lambda_on_moto: dict[str, Any], moto_aws: MotoAws
) -> None:
    env = lambda_on_moto
    sender = f"hub-{uuid.uuid4().hex[:8]}@example.com"
    moto_aws.boto3_client("sesv2").create_email_identity(EmailIdentity=sender)  # verified
    ses_secret = "ses-secret-" + uuid.uuid4().hex
    code, _ = admin(
        "PUT",
        "/admin/v1/tenants/acme/credentials/ses",
        {
            "from_address": sender,
            "region": REGION,
            "endpoint_url": moto_aws.endpoint,
            "access_key_id": FAKE_KEY,
            "secret_access_key": ses_secret,
        },
    )
    assert code == 204
    assert admin("PUT", "/admin/v1/tenants/acme/channels/email", {"provider": "ses"})[0] == 200
    sent_before = moto_aws.boto3_client("ses").get_send_quota()["SentLast24Hours"]

    nid = submit(
        env,
        "ES",
        {"recipient": {"email": "ana@example.org"}, "subject": "Your receipt", "body": "Hola Ana"},
    )
    event = sqs_event(env)
    assert [r["body"] for r in event["Records"]] == [nid]
    assert aws_lambda.worker_handler(event, None) == {"batchItemFailures": []}

    done = status(env, nid)
    assert done["status"] == "DONE"
    [attempt] = done["attempts"]
    assert (attempt["provider"], attempt["outcome"]) == ("ses", "delivered")
    # SES itself recorded the email: its counter, and the message in moto's state.
    assert moto_aws.boto3_client("ses").get_send_quota()["SentLast24Hours"] == sent_before + 1
    state = f"{moto_aws.endpoint}/moto-api/data.json"
    with urllib.request.urlopen(state) as response:  # noqa: S310 - the local moto server
        recorded = json.load(response)["ses"]["Message"]
    [mail] = [m for m in recorded if m["id"] == attempt["provider_message_id"]]
    assert mail["source"] == sender
    assert mail["destinations"] == {"ToAddresses": ["ana@example.org"]}
    assert (mail["subject"], mail["body"]) == ("Your receipt", "Hola Ana")
    # The SES secret rests in DynamoDB sealed under the KMS-wrapped data key.
    table = env["queue"].rsplit("/", 1)[1] + "-hub"
    stored = moto_aws.boto3_client("dynamodb").get_item(
        TableName=table, Key={"PK": {"S": "TENANT#acme"}, "SK": {"S": "CRED#ses"}}
    )["Item"]
    assert ses_secret not in json.dumps(stored, default=str)


def make_poison(env: dict[str, Any], moto_aws: MotoAws) -> tuple[str, dict[str, Any]]:
    """A notification whose every attempt raises; its stored request, to repair it later."""
    poison = submit(env, "ES", {"recipient": {"email": "a@example.com"}, "body": "hi"})
    # A row the worker cannot load (corrupted outside the hub): every attempt raises.
    table = env["queue"].rsplit("/", 1)[1] + "-hub"
    key = {"PK": {"S": f"N#{poison}"}, "SK": {"S": "N"}}
    dynamodb = moto_aws.boto3_client("dynamodb")
    request = dynamodb.get_item(TableName=table, Key=key)["Item"]["request"]
    dynamodb.update_item(
        TableName=table,
        Key=key,
        UpdateExpression="SET #r = :bad",
        ExpressionAttributeNames={"#r": "request"},
        ExpressionAttributeValues={":bad": {"S": "{not json"}},
    )
    for receive in (1, 2):
        event = sqs_event(env, wait=5)
        assert [r["body"] for r in event["Records"]] == [poison], receive
        result = aws_lambda.worker_handler(event, None)
        assert result["batchItemFailures"] == [{"itemIdentifier": event["Records"][0]["messageId"]}]
    # The third receive finds it moved: SQS's redrive policy, not the hub, moved it.
    assert sqs_event(env, wait=3)["Records"] == []

    def repair() -> None:
        # The row made readable again, and the claim of the crashed attempt lapsed
        # (its lease is long over by the time anyone looks at a DLQ).
        dynamodb.update_item(
            TableName=table,
            Key=key,
            UpdateExpression="SET #r = :good, #lease = :past",
            ExpressionAttributeNames={"#r": "request", "#lease": "claim_expires_at"},
            ExpressionAttributeValues={":good": request, ":past": {"N": "0"}},
        )

    return poison, {"repair": repair}


def test_a_poison_message_ends_in_the_dlq_through_the_redrive_policy(
    lambda_on_moto: dict[str, Any], moto_aws: MotoAws
) -> None:
    env = lambda_on_moto
    poison, _ = make_poison(env, moto_aws)
    dead = env["sqs"].receive_message(QueueUrl=env["dlq"], WaitTimeSeconds=2)
    assert [m["Body"] for m in dead.get("Messages", [])] == [poison]


def test_an_operator_lists_and_redrives_a_poison_message_with_ihub_dlq(
    lambda_on_moto: dict[str, Any], moto_aws: MotoAws
) -> None:
    env = lambda_on_moto
    poison, fix = make_poison(env, moto_aws)

    listed = ihub("dlq", "list", "--queue", "--json")
    assert listed.exit_code == 0, listed.output
    [entry] = json.loads(listed.stdout)
    assert (entry["id"], entry["tenant"]) == (poison, "acme")
    assert entry["status"] == "unreadable (ValidationError)"  # why it is poison
    assert entry["receive_count"] >= 2
    assert 0 <= entry["age_seconds"] < 120
    # Both kinds, labelled, in the human listing; looking consumed nothing.
    both = ihub("dlq", "list")
    assert both.exit_code == 0, both.output
    assert "Dead letters in the store" in both.stdout
    assert "SQS dead-letter queue" in both.stdout
    assert poison in both.stdout
    assert ihub("dlq", "redrive", "--queue", "nope").exit_code == 1

    fix["repair"]()  # the operator fixed the cause
    redriven = ihub("dlq", "redrive", "--queue", poison)
    assert redriven.exit_code == 0, redriven.output
    assert "redriven: 1" in redriven.stdout
    assert env["sqs"].receive_message(QueueUrl=env["dlq"]).get("Messages", []) == []

    event = sqs_event(env, wait=5)
    assert [
        (r["body"], r["messageAttributes"]["tenant"]["stringValue"]) for r in event["Records"]
    ] == [(poison, "acme")]
    assert aws_lambda.worker_handler(event, None) == {"batchItemFailures": []}
    done = status(env, poison)
    assert done["status"] == "DONE"
    assert [a["outcome"] for a in done["attempts"]][-1] == "delivered"


def test_the_admin_api_redrives_a_duplicate_poison_message_without_a_second_delivery(
    lambda_on_moto: dict[str, Any],
) -> None:
    env = lambda_on_moto
    nid = submit(env, "ES", {"recipient": {"email": "a@example.com"}, "body": "hi"})
    assert aws_lambda.worker_handler(sqs_event(env), None) == {"batchItemFailures": []}
    assert status(env, nid)["status"] == "DONE"
    # A stray copy of its message in the DLQ (a duplicate delivery SQS gave up on).
    tenant = {"tenant": {"DataType": "String", "StringValue": "acme"}}
    env["sqs"].send_message(QueueUrl=env["dlq"], MessageBody=nid, MessageAttributes=tenant)
    loop = aws_lambda._loop()
    loop.run_until_complete(
        create_tenant(aws_lambda._hub().store, aws_lambda._hub().clock, "globex")
    )

    code, listed = admin("GET", "/admin/v1/tenants/acme/queue-dead-letters")
    assert code == 200
    assert [(m["id"], m["tenant"]) for m in listed] == [(nid, "acme")]
    assert admin("GET", "/admin/v1/tenants/globex/queue-dead-letters") == (200, [])
    # Another tenant's operator path cannot move it.
    code, problem = admin("POST", f"/admin/v1/tenants/globex/queue-dead-letters/{nid}/redrive")
    assert (code, problem["field"]) == (404, "notification_id")
    code, body = admin("POST", f"/admin/v1/tenants/acme/queue-dead-letters/{nid}/redrive")
    assert (code, body) == (200, {"redriven": [nid]})

    # The worker's claim sees it finished: acked as a duplicate, not sent again.
    event = sqs_event(env, wait=5)
    assert [r["body"] for r in event["Records"]] == [nid]
    assert aws_lambda.worker_handler(event, None) == {"batchItemFailures": []}
    assert len(status(env, nid)["attempts"]) == 1
    deliveries = json.loads(ihub("outbox", "--tenant", "acme", "--json").stdout)
    assert [d["notification_id"] for d in deliveries] == [nid]
    assert sqs_event(env, wait=1)["Records"] == []


def lose_the_message(env: dict[str, Any], notification_id: str) -> None:
    """The SQS send after the DynamoDB commit 'failed': no message left in the queue."""
    event = sqs_event(env)
    assert [r["body"] for r in event["Records"]] == [notification_id]
    env["sqs"].delete_message(
        QueueUrl=env["queue"], ReceiptHandle=event["Records"][0]["receiptHandle"]
    )


def test_the_scheduled_reconciler_re_enqueues_a_lost_send_and_it_is_delivered(
    lambda_on_moto: dict[str, Any],
) -> None:
    env = lambda_on_moto
    nid = submit(env, "ES", {"recipient": {"email": "a@example.com"}, "body": "hi"})
    lose_the_message(env, nid)
    scheduled = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}

    # Nothing to do until it has been RECEIVED longer than IHUB_RECONCILE_AFTER_SECONDS (1 s).
    deadline = time.monotonic() + 30
    while (result := aws_lambda.reconcile_handler(scheduled, None))["reenqueued"] == 0:
        assert time.monotonic() < deadline, "the reconciler never found the lost send"
        time.sleep(0.2)
    assert result == {"reenqueued": 1, "expired": 0}

    event = sqs_event(env, wait=5)
    assert [r["body"] for r in event["Records"]] == [nid]
    assert aws_lambda.worker_handler(event, None) == {"batchItemFailures": []}
    assert status(env, nid)["status"] == "DONE"
    time.sleep(1.2)  # past the reconcile age again: a claimed notification is never re-sent
    assert aws_lambda.reconcile_handler(scheduled, None) == {"reenqueued": 0, "expired": 0}


def test_ihub_reconcile_runs_the_reconciler_once(lambda_on_moto: dict[str, Any]) -> None:
    env = lambda_on_moto
    nid = submit(env, "ES", {"recipient": {"email": "a@example.com"}, "body": "hi"})
    lose_the_message(env, nid)
    too_young = ihub("reconcile", "--older-than", "3600", "--json")
    assert (too_young.exit_code, json.loads(too_young.stdout)) == (0, {"reenqueued": 0})
    done = ihub("reconcile", "--older-than", "0", "--json")
    assert (done.exit_code, json.loads(done.stdout)) == (0, {"reenqueued": 1}), done.output
    assert [r["body"] for r in sqs_event(env, wait=5)["Records"]] == [nid]


def test_the_scheduled_reconciler_expires_a_delivery_nobody_reported_on(
    lambda_on_moto: dict[str, Any], moto_aws: MotoAws
) -> None:
    """No worker process runs on AWS: the reconciler's schedule is its periodic job."""
    hub = aws_lambda._hub()
    store = hub.store
    assert isinstance(store, DynamoStore)
    loop = aws_lambda._loop()
    backend = Backend("aws", store, hub.queue, store, ManualClock())
    silent, answered = notification(country="US"), notification(country="US")
    for n, message_id in ((silent, "SM-silent"), (answered, "SM-answered")):
        loop.run_until_complete(accept(backend, n))
        loop.run_until_complete(store.claim(n.id, "w", lease_seconds=30, max_attempts=5))
        done = Attempt(
            1, "twilio", from_epoch(0), Outcome.DELIVERED, 1.0, provider_message_id=message_id
        )
        assert loop.run_until_complete(store.complete_attempt(n.id, "w", done, status=Status.DONE))
        # Sent four days ago: past IHUB_RECEIPT_TIMEOUT_HOURS (72).
        sent_at = time.time() - 4 * 86400
        moto_aws.boto3_client("dynamodb").update_item(
            TableName=store.table,
            Key=tables.item(items.notification_key(n.id)),
            UpdateExpression="SET sent_at = :t, GSI4SK = :sk",
            ExpressionAttributeValues=tables.item(
                {":t": sent_at, ":sk": f"{tables.epoch_key(sent_at)}#{n.id}"}
            ),
        )
    now = from_epoch(time.time())
    answer = Receipt(
        "acme", "twilio", "SM-answered", DeliveryState.DELIVERED, "delivered", None, None, now
    )
    loop.run_until_complete(store.record_receipt(answer))
    scheduled = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
    assert aws_lambda.reconcile_handler(scheduled, None) == {"reenqueued": 0, "expired": 1}
    assert status(lambda_on_moto, silent.id)["delivery"]["state"] == "expired"
    assert status(lambda_on_moto, answered.id)["delivery"]["state"] == "delivered"
    assert aws_lambda.reconcile_handler(scheduled, None) == {"reenqueued": 0, "expired": 0}
