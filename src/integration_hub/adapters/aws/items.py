"""Item keys, rows read from items, and the UpdateExpression builder.

Shared by every part of the DynamoDB store; the item layout is in ADR 0011.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from integration_hub.adapters import rows
from integration_hub.adapters.aws import tables
from integration_hub.adapters.aws.tables import item
from integration_hub.domain.models import Notification
from integration_hub.domain.receipts import DeliveryState
from integration_hub.domain.status import Status

CONDITION_FAILED = "ConditionalCheckFailedException"
TRANSACTION_CANCELED = "TransactionCanceledException"
# Optimistic writes (claims, quota windows) retry this often before giving up.
MAX_CONTENTION_RETRIES = 100


class Row(dict[str, Any]):
    """An item as a row: absent attributes read as None (DynamoDB stores no nulls)."""

    def __missing__(self, key: str) -> None:
        return None


class Update:
    """An UpdateExpression with placeholders for every name and value."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}
        self._sets: list[str] = []
        self._removes: list[str] = []

    def name(self, *path: str) -> str:
        """A document path of placeholders."""
        out = []
        for part in path:
            placeholder = f"#n{len(self.names)}"
            found = next((k for k, v in self.names.items() if v == part), None)
            if found is None:
                self.names[placeholder] = part
                found = placeholder
            out.append(found)
        return ".".join(out)

    def value(self, value: Any) -> str:
        """A value placeholder."""
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = value
        return placeholder

    def set(self, *path: str, value: Any) -> Update:
        """SET a path (None removes it: absent is null)."""
        if value is None:
            self._removes.append(self.name(*path))
        else:
            self._sets.append(f"{self.name(*path)} = {self.value(value)}")
        return self

    def remove(self, *path: str) -> Update:
        """REMOVE a path."""
        self._removes.append(self.name(*path))
        return self

    def bump(self, attribute: str = "version", by: int = 1) -> Update:
        """Add to a number (``version`` by default, which every transition bumps)."""
        path = self.name(attribute)
        self._sets.append(f"{path} = if_not_exists({path}, {self.value(0)}) + {self.value(by)}")
        return self

    def request(self, table: str, key: Mapping[str, str], condition: str | None) -> dict[str, Any]:
        """UpdateItem parameters (also the ``Update`` of a transaction)."""
        parts = []
        if self._sets:
            parts.append("SET " + ", ".join(self._sets))
        if self._removes:
            parts.append("REMOVE " + ", ".join(self._removes))
        params: dict[str, Any] = {
            "TableName": table,
            "Key": item(key),
            "UpdateExpression": " ".join(parts),
            "ExpressionAttributeNames": self.names,
        }
        if self.values:
            params["ExpressionAttributeValues"] = {
                k: tables.encode(v) for k, v in self.values.items()
            }
        if condition:
            params["ConditionExpression"] = condition
        return params


def condition_params(update: Update, condition: str) -> dict[str, Any]:
    """A ``ConditionExpression`` with ``update``'s placeholders, for a put or delete."""
    params: dict[str, Any] = {
        "ConditionExpression": condition,
        "ExpressionAttributeNames": update.names,
    }
    if update.values:
        params["ExpressionAttributeValues"] = {
            k: tables.encode(v) for k, v in update.values.items()
        }
    return params


def notification_key(notification_id: str) -> dict[str, str]:
    """The key of a notification item."""
    return {"PK": f"N#{notification_id}", "SK": "N"}


def dead_letter_key(notification_id: str) -> dict[str, str]:
    """The key of a notification's dead letter."""
    return {"PK": f"N#{notification_id}", "SK": "DL"}


def idempotency_key(tenant: str, key: str) -> dict[str, str]:
    """The key of an Idempotency-Key record."""
    return {"PK": f"IDEM#{tenant}#{key}", "SK": "IDEM"}


def _part(value: str) -> str:
    # Percent-encoding every '#' (and '%' itself) keeps a key's parts apart
    # whatever a provider puts in its message ids.
    return quote(value, safe="")


# DynamoDB's partition keys hold at most 2048 bytes; a longer index key is hashed.
_MAX_KEY_BYTES = 1024


def provider_message_key(tenant: str, provider: str, provider_message_id: str) -> dict[str, str]:
    """The key of the index item (tenant, provider, provider message id) -> notification.

    Written by ``complete_attempt`` and read by ``record_receipt`` with one
    strongly consistent GetItem. The parts are percent-encoded, so a ``#`` in
    a provider's id cannot make two triples one key.
    """
    pk = f"PMSG#{_part(tenant)}#{_part(provider)}#{_part(provider_message_id)}"
    if len(pk.encode()) > _MAX_KEY_BYTES:
        pk = "PMSG#H#" + hashlib.sha256(pk.encode()).hexdigest()
    return {"PK": pk, "SK": "PMSG"}


EVENT_PREFIX = "EVENT#"


def event_key(notification_id: str, identity_hash: str) -> dict[str, str]:
    """The key of one recorded receipt: in its notification's partition, by identity."""
    return {"PK": f"N#{notification_id}", "SK": f"{EVENT_PREFIX}{identity_hash}"}


def suppression_key(tenant: str, channel: str, address: str) -> dict[str, str]:
    """The key of a suppression: the tenant's partition, sorted by (channel, address).

    A channel has no ``#``, so the first ``#`` of the sort key ends it; ``#``
    sorts below every letter, so the keys sort as the (channel, address) pairs.
    """
    return {"PK": f"SUPP#{tenant}", "SK": f"{channel}#{address}"}


def status_index(tenant: str, status: Status | str) -> str:
    """The GSI2 partition of a tenant's notifications in one status."""
    return f"T#{tenant}#S#{status}"


def cancel_codes(exc: BaseException) -> list[str]:
    """Per-item codes of a canceled transaction ('None' where an item was fine)."""
    reasons = getattr(exc, "response", {}).get("CancellationReasons") or []
    return [str(r.get("Code", "None")) for r in reasons]


def notification(found: Mapping[str, Any]) -> Notification:
    """A notification item (attempts as a map by number) as the domain model."""
    row = Row(found)
    attempts = sorted((found.get("attempts") or {}).values(), key=lambda a: a["number"])
    made = rows.notification_from_row(row, [rows.attempt_from_row(Row(a)) for a in attempts])
    state = row["delivery_state"]
    made.delivery_state = None if state is None else DeliveryState(state)
    made.delivery_updated_at = rows.to_dt(row["delivery_updated_at"])
    made.provider_message_id = row["provider_message_id"]
    return made
