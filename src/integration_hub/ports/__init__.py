"""Ports: the small interfaces the service layer needs from the outside world.

Adapters under ``integration_hub.adapters`` implement them; only the backend
registry, ``bootstrap`` and the entry points know which adapter is in use.
One module per concern; the Store is split by role (``store``), so that each
service names the part it uses. Every name is importable from here.
"""

from __future__ import annotations

from integration_hub.ports.backend import (
    Backend,
    BackendKind,
)
from integration_hub.ports.clock import (
    Clock,
    SystemClock,
)
from integration_hub.ports.journal import (
    OutcomeJournal,
    PendingOutcome,
)
from integration_hub.ports.metrics import (
    Metrics,
    NoMetrics,
)
from integration_hub.ports.outbox import (
    Outbox,
    OutboxEntry,
)
from integration_hub.ports.providers import (
    Provider,
    ProviderDirectory,
)
from integration_hub.ports.queue import (
    PoisonMessage,
    Queue,
    QueueDeadLetters,
    QueueMessage,
    QueueStats,
    Settle,
)
from integration_hub.ports.receipts import (
    DeliveryEvent,
    Match,
    ReceiptRecord,
    ReceiptStore,
    Suppression,
    SuppressionStore,
)
from integration_hub.ports.secrets import (
    CredentialStore,
    DataKeyStore,
    KeyRing,
    SealedData,
    SecretStore,
)
from integration_hub.ports.store import (
    ClaimRequest,
    ClaimStore,
    Completion,
    DeadLetter,
    DeadLetterStore,
    FirstAccept,
    IdempotencyRecord,
    IngestStore,
    NewKeyAccept,
    ReadStore,
    Store,
    TenantStore,
)
from integration_hub.ports.webhooks import WebhookStats, WebhookStore, WebhookTransport

__all__ = [
    "Backend",
    "BackendKind",
    "ClaimRequest",
    "ClaimStore",
    "Clock",
    "Completion",
    "CredentialStore",
    "DataKeyStore",
    "DeadLetter",
    "DeadLetterStore",
    "DeliveryEvent",
    "FirstAccept",
    "IdempotencyRecord",
    "IngestStore",
    "KeyRing",
    "Match",
    "Metrics",
    "NewKeyAccept",
    "NoMetrics",
    "Outbox",
    "OutboxEntry",
    "OutcomeJournal",
    "PendingOutcome",
    "PoisonMessage",
    "Provider",
    "ProviderDirectory",
    "Queue",
    "QueueDeadLetters",
    "QueueMessage",
    "QueueStats",
    "ReadStore",
    "ReceiptRecord",
    "ReceiptStore",
    "SealedData",
    "SecretStore",
    "Settle",
    "Store",
    "Suppression",
    "SuppressionStore",
    "SystemClock",
    "TenantStore",
    "WebhookStats",
    "WebhookStore",
    "WebhookTransport",
]
