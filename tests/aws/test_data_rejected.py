"""A value DynamoDB refuses (an item over 400 KB) is DataRejected: permanent, never
an outage, never retried; other ValidationExceptions stay the adapter's bugs."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from integration_hub.adapters.aws.session import translated
from integration_hub.domain.errors import DataRejected, Unavailable
from integration_hub.domain.models import Attempt, Outcome, from_epoch
from integration_hub.domain.status import Status
from support import Backend, accept, notification

# Over DynamoDB's item size limit (400 KB) on its own.
OVERSIZED = "x" * 500_000


async def test_an_outcome_too_large_for_an_item_is_rejected_and_changes_nothing(
    aws: Backend,
) -> None:
    n = notification(clock=aws.clock)
    await accept(aws, n)
    assert await aws.store.claim(n.id, "t1", lease_seconds=30, max_attempts=5) is not None
    attempt = Attempt(
        number=1,
        provider="sandbox",
        started_at=from_epoch(0),
        outcome=Outcome.DELIVERED,
        latency_ms=1.0,
        provider_response=OVERSIZED,
    )
    with pytest.raises(DataRejected) as refused:
        await aws.store.complete_attempt(n.id, "t1", attempt, status=Status.DONE)
    assert not isinstance(refused.value, Unavailable)
    assert "x" * 10 not in str(refused.value)  # never the value itself
    seen = await aws.store.get_notification("acme", n.id)
    assert seen is not None
    assert seen.status is Status.PROCESSING


def client_error(code: str, message: str, **extra: object) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}, **extra}, "TransactWriteItems")


async def test_a_transaction_item_over_the_size_limit_is_rejected() -> None:
    cancelled = client_error(
        "TransactionCanceledException",
        "Transaction cancelled",
        CancellationReasons=[
            {"Code": "None"},
            {
                "Code": "ValidationError",
                "Message": "Item size has exceeded the maximum allowed size",
            },
        ],
    )
    with pytest.raises(DataRejected):
        async with translated("DynamoDB"):
            raise cancelled


@pytest.mark.parametrize(
    "error",
    [
        client_error("ValidationException", "Invalid UpdateExpression: Syntax error; token: ,"),
        client_error(
            "TransactionCanceledException",
            "Transaction cancelled",
            CancellationReasons=[{"Code": "ConditionalCheckFailed"}],
        ),
    ],
)
async def test_other_validation_errors_and_failed_conditions_stay_client_errors(
    error: ClientError,
) -> None:
    with pytest.raises(ClientError):
        async with translated("DynamoDB"):
            raise error
