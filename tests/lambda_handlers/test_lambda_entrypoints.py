"""The Lambda handlers with real events, on a SQLite-backed hub: an API Gateway
event into the API handler, then an SQS-shaped event into the worker handler."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from integration_hub.config import ConfigurationError
from integration_hub.domain.errors import InvalidTransition
from integration_hub.entrypoints import aws_lambda
from integration_hub.service.tenants import create_tenant
from support import api_gateway_event


@pytest.fixture
def lambda_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh container: env configured, no hub built yet; the tenant's key."""
    monkeypatch.setenv("IHUB_DATABASE_URL", f"sqlite:///{tmp_path / 'lambda.db'}")
    monkeypatch.setenv("IHUB_BACKOFF_BASE_SECONDS", "0.05")
    aws_lambda._state.clear()
    hub = aws_lambda._hub()
    created = aws_lambda._loop().run_until_complete(create_tenant(hub.store, hub.clock, "acme"))
    try:
        yield created.api_key
    finally:
        loop = aws_lambda._loop()
        loop.run_until_complete(hub.close())
        loop.close()
        aws_lambda._state.clear()
        asyncio.set_event_loop(None)


def sqs_event() -> dict[str, Any]:
    """What the SQS event source would deliver for the queued notifications."""
    hub = aws_lambda._hub()
    messages = aws_lambda._loop().run_until_complete(hub.queue.receive(10, visibility_timeout=30))
    return {
        "Records": [
            {
                "messageId": f"m-{m.notification_id}",
                "receiptHandle": m.receipt,
                "body": m.notification_id,
                "attributes": {"ApproximateReceiveCount": str(m.receive_count)},
                "messageAttributes": {"tenant": {"stringValue": m.tenant, "dataType": "String"}},
                "eventSource": "aws:sqs",
            }
            for m in messages
        ]
    }


def submit(key: str, country: str, body: dict[str, Any]) -> dict[str, Any]:
    event = api_gateway_event(
        "POST",
        "/v1/notifications",
        key,
        body,
        **{"x-country": country, "idempotency-key": str(uuid.uuid4())},
    )
    response = aws_lambda.api_handler(event, None)
    assert response["statusCode"] == 202, response
    accepted: dict[str, Any] = json.loads(response["body"])
    return accepted


def test_api_gateway_to_worker_to_done_with_a_partial_batch_failure(lambda_env: str) -> None:
    key = lambda_env
    ok = submit(key, "ES", {"recipient": {"email": "a@example.com"}, "body": "hi"})
    flaky = submit(
        key,
        "MX",
        {
            "recipient": {"phone": "+5215512345678"},
            "body": "hi",
            "metadata": {"sandbox": {"fail": "transient", "times": 1}},
        },
    )
    event = sqs_event()
    assert len(event["Records"]) == 2
    result = aws_lambda.worker_handler(event, None)
    # Only the one scheduled for a retry comes back; the delivered one is done.
    assert result == {"batchItemFailures": [{"itemIdentifier": f"m-{flaky['id']}"}]}
    view = aws_lambda.api_handler(
        api_gateway_event("GET", f"/v1/notifications/{ok['id']}", key), None
    )
    assert json.loads(view["body"])["status"] == "DONE"
    # The retry is delivered on the next event once its backoff has passed.
    for _ in range(50):
        retry = sqs_event()
        if retry["Records"]:
            break
        aws_lambda._loop().run_until_complete(asyncio.sleep(0.05))
    assert aws_lambda.worker_handler(retry, None) == {"batchItemFailures": []}
    done = aws_lambda.api_handler(
        api_gateway_event("GET", f"/v1/notifications/{flaky['id']}", key), None
    )
    assert [a["outcome"] for a in json.loads(done["body"])["attempts"]] == [
        "transient",
        "delivered",
    ]


def test_a_record_that_makes_the_worker_raise_is_reported_failed(lambda_env: str) -> None:
    bad = {
        "messageId": "m-bad",
        "receiptHandle": "r",
        "body": "x",
        "attributes": {"ApproximateReceiveCount": "not-a-number"},
    }
    assert aws_lambda.worker_handler({"Records": [bad]}, None) == {
        "batchItemFailures": [{"itemIdentifier": "m-bad"}]
    }


def test_the_api_handler_answers_problems_like_the_server(lambda_env: str) -> None:
    response = aws_lambda.api_handler(api_gateway_event("GET", "/v1/notifications", "wrong"), None)
    assert response["statusCode"] == 401
    assert response["headers"]["content-type"] == "application/problem+json"


def test_the_reconcile_handler_refuses_a_backend_that_enqueues_in_its_transaction(
    lambda_env: str,
) -> None:
    # SQLite commits the notification and its queue entry together: nothing to repair.
    with pytest.raises(ConfigurationError, match="only the DynamoDB backend needs a reconciler"):
        aws_lambda.reconcile_handler({"source": "aws.events"}, None)


class BreakingStore:
    """The hub's store, whose completions break an invariant (as a bug would)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def complete_attempt(self, *args: Any, **kwargs: Any) -> Any:
        raise InvalidTransition("cannot move a notification from DONE to DONE")


def test_an_invariant_breach_is_reported_failed_so_sqs_redelivers_it(lambda_env: str) -> None:
    sent = submit(lambda_env, "ES", {"recipient": {"email": "a@example.com"}, "body": "hi"})
    hub = aws_lambda._hub()
    hub.dispatcher.store = BreakingStore(hub.store)
    # Not deleted: a broken message is kept for redelivery, never dropped.
    assert aws_lambda.worker_handler(sqs_event(), None) == {
        "batchItemFailures": [{"itemIdentifier": f"m-{sent['id']}"}]
    }


class RemainingTime:
    def __init__(self, millis: int) -> None:
        self.millis = millis

    def get_remaining_time_in_millis(self) -> int:
        return self.millis


def test_the_webhooks_lambda_claims_until_one_request_and_the_margin_are_left() -> None:
    margin = aws_lambda.WEBHOOKS_MARGIN_SECONDS
    assert aws_lambda.webhooks_budget(RemainingTime(80_000), 15.0) == 80 - 15 - margin
    # Too little left for a request: it still fans out and claims once.
    assert aws_lambda.webhooks_budget(RemainingTime(10_000), 15.0) == 1.0
    assert aws_lambda.webhooks_budget(None, 15.0) == aws_lambda.WEBHOOKS_DEFAULT_SECONDS


def test_the_webhooks_handler_runs_the_loop_on_sqlite_and_reports_its_attempts(
    lambda_env: str,
) -> None:
    # Nothing to send: the loop runs its time and reports no attempts.
    result = aws_lambda.webhooks_handler({}, RemainingTime(int((15 + 5 + 0.3) * 1000)))
    assert result == {"attempts": 0, "outcomes": {}}
