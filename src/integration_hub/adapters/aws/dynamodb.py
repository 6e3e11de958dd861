"""The Store, Outbox, SecretStore and WebhookStore ports on one DynamoDB table.

Every status transition is a conditional write, and every change that spans
items is one ``TransactWriteItems``; times are numbers from the injected
clock, never the server's. Item layout and access patterns: ADR 0011.

``DynamoStore`` is assembled from one part per item kind (``tenants``,
``idempotency``, ``notifications``, ``claims``, ``receipts``,
``suppressions``, ``secrets``, ``retention``, and ``webhooks`` with
``webhook_deliveries``), all on the calls of ``client.TableClient``.
"""

from __future__ import annotations

from integration_hub.adapters.aws.claims import ClaimItems
from integration_hub.adapters.aws.idempotency import IdempotencyItems
from integration_hub.adapters.aws.notifications import NotificationItems
from integration_hub.adapters.aws.receipts import ReceiptItems
from integration_hub.adapters.aws.retention import RetentionItems
from integration_hub.adapters.aws.secrets import SecretItems
from integration_hub.adapters.aws.suppressions import SuppressionItems
from integration_hub.adapters.aws.tenants import TenantItems
from integration_hub.adapters.aws.webhooks import DynamoWebhookStore


class DynamoStore(
    TenantItems,
    IdempotencyItems,
    NotificationItems,
    ClaimItems,
    ReceiptItems,
    SuppressionItems,
    SecretItems,
    RetentionItems,
    DynamoWebhookStore,
):
    """Store, Outbox, SecretStore and WebhookStore on one DynamoDB table (ADRs 0011, 0021)."""

    async def close(self) -> None:
        """Close the AWS clients (shared with the SQS queue)."""
        await self.session.close()
