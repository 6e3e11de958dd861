"""The DynamoDB table: its definition, its keys, and the attribute-value codec.

One table (``<prefix>-hub``) holds every item kind; ADR 0011 lists the access
patterns. Production tables come from CDK (``infra/``); ``ensure_table``
creates the same definition for tests and local development.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from integration_hub.adapters.aws.session import AwsSession, is_client_error, translated
from integration_hub.domain.errors import Unavailable

# Sparse index of RECEIVED notifications, sharded so that a busy ingest does not
# write one hot partition; the reconciler queries every shard.
PENDING_SHARDS = 8
GSIS = ("GSI1", "GSI2", "GSI3", "GSI4", "GSI5")
# That index: the only one the reconciler reads (its IAM policy names it).
RECEIVED_INDEX = "GSI4"
# The same index also holds, in partitions of their own (``SENT#<0-7>``), the
# notifications whose delivery state is ``sent``, by sent time: what
# ``expire_deliveries`` reads. A notification is never RECEIVED and ``sent``
# at once (``sent`` starts when an attempt finishes DONE), so one item never
# needs both entries, and the reconciler, which runs expiry too, keeps reading
# one index only.
SENT_INDEX = "GSI4"
# GSI5 is the webhooks' (webhook_items.WEBHOOK_INDEX): the sparse, sharded
# partitions of unfanned events and of pending deliveries by due time.


def table_name(prefix: str) -> str:
    """The table a ``dynamodb://<prefix>`` URL names."""
    return f"{prefix}-hub"


def definition(name: str) -> dict[str, Any]:
    """``CreateTable`` parameters: string PK/SK and five overloaded GSIs, on demand."""
    attributes = [("PK", "S"), ("SK", "S")]
    indexes = []
    for gsi in GSIS:
        attributes += [(f"{gsi}PK", "S"), (f"{gsi}SK", "S")]
        indexes.append(
            {
                "IndexName": gsi,
                "KeySchema": [
                    {"AttributeName": f"{gsi}PK", "KeyType": "HASH"},
                    {"AttributeName": f"{gsi}SK", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        )
    return {
        "TableName": name,
        "AttributeDefinitions": [{"AttributeName": a, "AttributeType": t} for a, t in attributes],
        "KeySchema": [
            {"AttributeName": "PK", "KeyType": "HASH"},
            {"AttributeName": "SK", "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": indexes,
        "BillingMode": "PAY_PER_REQUEST",
    }


STARTUP_ATTEMPTS = 10
"""How often ``ensure_table`` tries while DynamoDB throttles or is briefly down."""


async def ensure_table(session: AwsSession, name: str) -> None:
    """Create the table (and turn on TTL on ``expires_ttl``) unless it exists.

    A process starting while DynamoDB throttles waits it out (with the
    answer's ``Retry-After``, bounded) instead of dying on its first call;
    only a lasting outage ends the start.
    """
    for attempt in range(1, STARTUP_ATTEMPTS + 1):
        try:
            await _ensure_table(session, name)
            return
        except Unavailable as exc:
            if attempt == STARTUP_ATTEMPTS:
                raise
            await asyncio.sleep(min(exc.retry_after or 0.5, 0.5 * attempt))


async def _ensure_table(session: AwsSession, name: str) -> None:
    client = await session.client("dynamodb")
    async with translated("DynamoDB"):
        try:
            await client.create_table(**definition(name))
        except Exception as exc:
            if not is_client_error(exc, "ResourceInUseException"):
                raise
            return
        for _ in range(100):
            described = await client.describe_table(TableName=name)
            if described["Table"]["TableStatus"] == "ACTIVE":
                break
            await asyncio.sleep(0.1)
        await client.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_ttl"},
        )


async def drop_table(session: AwsSession, name: str) -> None:
    """Delete the table (tests)."""
    client = await session.client("dynamodb")
    async with translated("DynamoDB"):
        await client.delete_table(TableName=name)


# -- keys -----------------------------------------------------------------------


def epoch_key(seconds: float) -> str:
    """Epoch seconds as a fixed-width string that sorts like the number."""
    return f"{seconds:017.6f}"


def seq_key(seq: int) -> str:
    """A sequence number as a fixed-width sortable string."""
    return f"{seq:015d}"


def pending_shard(notification_id: str) -> str:
    """The GSI4 partition of a RECEIVED notification."""
    return f"PENDING#{int(notification_id[-1], 16) % PENDING_SHARDS}"


def sent_shard(notification_id: str) -> str:
    """The GSI4 partition of a notification whose delivery state is ``sent``."""
    return f"SENT#{int(notification_id[-1], 16) % PENDING_SHARDS}"


# -- attribute values -------------------------------------------------------------


def encode(value: Any) -> dict[str, Any]:
    """A Python value as a DynamoDB attribute value."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float):
        return {"N": repr(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, bytes | bytearray):
        return {"B": bytes(value)}
    if isinstance(value, Mapping):
        # DynamoDB stores no nulls here: an absent attribute reads as None.
        return {"M": {str(k): encode(v) for k, v in value.items() if v is not None}}
    if isinstance(value, list | tuple):
        return {"L": [encode(v) for v in value]}
    raise TypeError(f"cannot store {type(value).__name__} in DynamoDB")


def decode(value: Mapping[str, Any]) -> Any:
    """A DynamoDB attribute value as a Python value."""
    kind, raw = next(iter(value.items()))
    if kind == "NULL":
        return None
    if kind == "N":
        try:
            return int(raw)
        except ValueError:
            return float(raw)
    if kind == "M":
        return {k: decode(v) for k, v in raw.items()}
    if kind == "L":
        return [decode(v) for v in raw]
    if kind == "B":
        return bytes(raw)
    return raw  # S, BOOL


def item(values: Mapping[str, Any]) -> dict[str, Any]:
    """A whole item (or a key, or expression values) in wire form; None is left out."""
    return {k: encode(v) for k, v in values.items() if v is not None}


def plain(wire: Mapping[str, Any]) -> dict[str, Any]:
    """A wire item as a dict of Python values."""
    return {k: decode(v) for k, v in wire.items()}
