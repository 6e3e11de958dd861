"""The AWS deployment end to end on moto over HTTP: an API Gateway event into the API
handler, DynamoDB and SQS, SQS events into the worker handler, the DLQ by redrive policy."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from aws.motoserver import FAKE_KEY, REGION, MotoAws
from integration_hub.entrypoints import aws_lambda
from integration_hub.service.tenants import create_tenant
from support import api_gateway_event


@pytest.fixture
def lambda_on_moto(moto_aws: MotoAws, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A Lambda container configured for DynamoDB + SQS (with a DLQ after 2 receives)."""
    sqs = moto_aws.boto3_client("sqs")
    name = "ihub-e2e-" + uuid.uuid4().hex[:8]
    dlq = sqs.create_queue(QueueName=name + "-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    queue = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": "1",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"}),
        },
    )["QueueUrl"]
    url = f"dynamodb://{name}?queue={queue}&endpoint={moto_aws.endpoint}&region={REGION}"
    for var, value in {
        "IHUB_DATABASE_URL": url,
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


def sqs_event(env: dict[str, Any], wait: int = 2) -> dict[str, Any]:
    """What the event source mapping would hand the worker: a real SQS receive."""
    got = env["sqs"].receive_message(
        QueueUrl=env["queue"],
        MaxNumberOfMessages=10,
        WaitTimeSeconds=wait,
        AttributeNames=["All"],
        MessageAttributeNames=["All"],
    )
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "eventSource": "aws:sqs",
                "messageAttributes": {
                    k: {"stringValue": v.get("StringValue"), "dataType": v.get("DataType")}
                    for k, v in m.get("MessageAttributes", {}).items()
                },
            }
            for m in got.get("Messages", [])
        ]
    }


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


def test_a_poison_message_ends_in_the_dlq_through_the_redrive_policy(
    lambda_on_moto: dict[str, Any], moto_aws: MotoAws
) -> None:
    env = lambda_on_moto
    poison = submit(env, "ES", {"recipient": {"email": "a@example.com"}, "body": "hi"})
    # A row the worker cannot load (corrupted outside the hub): every attempt raises.
    table = env["queue"].rsplit("/", 1)[1] + "-hub"
    moto_aws.boto3_client("dynamodb").update_item(
        TableName=table,
        Key={"PK": {"S": f"N#{poison}"}, "SK": {"S": "N"}},
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
    dead = env["sqs"].receive_message(QueueUrl=env["dlq"], WaitTimeSeconds=2)
    assert [m["Body"] for m in dead.get("Messages", [])] == [poison]
