"""The trace across SQS and DynamoDB (moto over HTTP) and through the Lambda handlers."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

from aws.motoserver import FAKE_KEY, REGION, MotoAws, sqs_lambda_event
from integration_hub.entrypoints import aws_lambda
from integration_hub.service import redrive
from integration_hub.service.tenants import create_tenant
from observability.obs_support import SECRET_BODY, SECRET_EMAIL, named, only, parent_id, payload
from support import ManualClock, api_gateway_event


async def test_sqs_messages_carry_the_enqueuing_span_s_traceparent_and_tracestate(
    moto_aws: MotoAws, spans: InMemorySpanExporter
) -> None:
    backend = await moto_aws.backend(ManualClock())
    try:
        caller = SpanContext(
            trace_id=0x0AF7651916CD43DD8448EB211C80319C,
            span_id=0xB7AD6B7169203331,
            is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
            trace_state=TraceState([("vendor", "v1")]),
        )
        parent = trace.set_span_in_context(NonRecordingSpan(caller))
        with trace.get_tracer("test").start_as_current_span("enqueue", context=parent) as span:
            await backend.queue.enqueue("n-traced", "acme")
        await backend.queue.enqueue("n-plain", "acme")
        got = {m.notification_id: m for m in await _receive_all(backend.queue, 2)}
    finally:
        await backend.store.close()
        moto_aws.cleanup()

    ids = span.get_span_context()
    assert got["n-traced"].traceparent == (
        f"00-{trace.format_trace_id(ids.trace_id)}-{trace.format_span_id(ids.span_id)}-01"
    )
    assert got["n-traced"].tracestate == "vendor=v1"
    assert got["n-plain"].traceparent is None
    assert got["n-plain"].tracestate is None


async def _receive_all(queue: Any, count: int) -> list[Any]:
    found: list[Any] = []
    for _ in range(200):
        found += await queue.receive(10, visibility_timeout=30)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"only {len(found)} of {count} messages arrived")


@pytest.fixture
def lambda_on_moto(moto_aws: MotoAws, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A Lambda container on DynamoDB + SQS served by moto; tenant acme's key."""
    sqs = moto_aws.boto3_client("sqs")
    name = "ihub-trace-" + uuid.uuid4().hex[:8]
    queue = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "1"})["QueueUrl"]
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
        yield {"key": key, "queue": queue, "sqs": sqs, "table": name + "-hub"}
    finally:
        loop.run_until_complete(hub.close())
        loop.close()
        aws_lambda._state.clear()
        asyncio.set_event_loop(None)
        sqs.delete_queue(QueueUrl=queue)
        moto_aws.boto3_client("dynamodb").delete_table(TableName=name + "-hub")


def submit(env: dict[str, Any], country: str = "ES", fail: str | None = None) -> str:
    """An API Gateway event into the API handler; the notification id."""
    event = api_gateway_event(
        "POST",
        "/v1/notifications",
        env["key"],
        payload(country, fail),
        **{"x-country": country, "idempotency-key": str(uuid.uuid4())},
    )
    response = aws_lambda.api_handler(event, None)
    assert response["statusCode"] == 202, response
    notification_id: str = json.loads(response["body"])["id"]
    return notification_id


def sqs_event(env: dict[str, Any], *, attributes: bool = True) -> dict[str, Any]:
    """What the event source mapping hands the worker: a real receive, attributes in camelCase."""
    return sqs_lambda_event(
        env["sqs"],
        env["queue"],
        wait_seconds=5,
        keep_attribute=lambda name: attributes or name == "tenant",
    )


def test_the_lambda_handlers_keep_one_trace_from_api_gateway_through_sqs_to_the_provider(
    lambda_on_moto: dict[str, Any], spans: InMemorySpanExporter
) -> None:
    submit(lambda_on_moto)
    event = sqs_event(lambda_on_moto)
    (record,) = event["Records"]
    assert "traceparent" in record["messageAttributes"]
    assert aws_lambda.worker_handler(event, None) == {"batchItemFailures": []}

    server = only(spans, "POST /v1/notifications")
    accept = only(spans, "ihub.accept")
    attempt = only(spans, "ihub.attempt")
    call = only(spans, "ihub.provider sandbox")
    assert {s.context.trace_id for s in (server, accept, attempt, call)} == {
        server.context.trace_id
    }
    # The message was sent inside the accept span: the attempt is its child.
    assert parent_id(attempt) == accept.context.span_id
    assert parent_id(call) == attempt.context.span_id
    traceparent = record["messageAttributes"]["traceparent"]["stringValue"]
    assert traceparent.split("-")[2] == trace.format_span_id(accept.context.span_id)


def test_a_record_without_trace_attributes_continues_the_trace_stored_in_dynamodb(
    lambda_on_moto: dict[str, Any], spans: InMemorySpanExporter, moto_aws: MotoAws
) -> None:
    notification_id = submit(lambda_on_moto)
    item = moto_aws.boto3_client("dynamodb").get_item(
        TableName=lambda_on_moto["table"],
        Key={"PK": {"S": f"N#{notification_id}"}, "SK": {"S": "N"}},
    )["Item"]
    event = sqs_event(lambda_on_moto, attributes=False)
    assert "traceparent" not in event["Records"][0]["messageAttributes"]
    assert aws_lambda.worker_handler(event, None) == {"batchItemFailures": []}

    accept = only(spans, "ihub.accept")
    attempt = only(spans, "ihub.attempt")
    assert item["traceparent"]["S"].split("-")[1] == trace.format_trace_id(accept.context.trace_id)
    assert parent_id(attempt) == accept.context.span_id
    assert attempt.context.trace_id == accept.context.trace_id


def test_a_notification_redriven_on_sqs_is_attempted_again_in_its_original_trace(
    lambda_on_moto: dict[str, Any], spans: InMemorySpanExporter
) -> None:
    notification_id = submit(lambda_on_moto, fail="permanent")
    assert aws_lambda.worker_handler(sqs_event(lambda_on_moto), None) == {"batchItemFailures": []}
    hub = aws_lambda._hub()
    assert aws_lambda._loop().run_until_complete(
        redrive.redrive(hub.store, hub.queue, "acme", notification_id)
    )
    event = sqs_event(lambda_on_moto)
    assert aws_lambda.worker_handler(event, None) == {"batchItemFailures": []}

    accept = only(spans, "ihub.accept")
    resumed = only(spans, "ihub.redrive")
    attempts = named(spans, "ihub.attempt")
    assert [a.attributes["ihub.result"] for a in attempts] == ["failed", "done"]  # type: ignore[index]
    assert {a.context.trace_id for a in (*attempts, resumed)} == {accept.context.trace_id}
    assert parent_id(resumed) == accept.context.span_id
    assert parent_id(attempts[1]) == resumed.context.span_id
    text = json.dumps([dict(s.attributes or {}) for s in spans.get_finished_spans()], default=str)
    assert SECRET_EMAIL not in text
    assert SECRET_BODY not in text


def test_a_retry_on_sqs_comes_back_with_its_trace_context(
    lambda_on_moto: dict[str, Any], spans: InMemorySpanExporter
) -> None:
    submit(lambda_on_moto, fail="transient")
    first = sqs_event(lambda_on_moto)
    (record,) = first["Records"]
    assert aws_lambda.worker_handler(first, None) == {
        "batchItemFailures": [{"itemIdentifier": record["messageId"]}]
    }
    again = sqs_event(lambda_on_moto)  # back after the backoff (whole seconds on SQS)
    assert [r["messageId"] for r in again["Records"]] == [record["messageId"]]
    assert (
        again["Records"][0]["messageAttributes"]["traceparent"]
        == (record["messageAttributes"]["traceparent"])
    )
    assert aws_lambda.worker_handler(again, None) == {"batchItemFailures": []}

    accept = only(spans, "ihub.accept")
    attempts = named(spans, "ihub.attempt")
    assert [a.attributes["ihub.result"] for a in attempts] == ["retry", "done"]  # type: ignore[index]
    assert all(parent_id(a) == accept.context.span_id for a in attempts)
