"""AWS: DynamoDB for state, SQS for the queue (ADR 0011, docs/aws.md).

aiobotocore is the optional ``aws`` extra: it is imported when a backend
opens, so that naming this scheme without it is a clear configuration error.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from integration_hub.config import ConfigurationError
from integration_hub.ports import Backend, Clock, QueueDeadLetters

if TYPE_CHECKING:
    from integration_hub.adapters.aws.dynamodb import DynamoStore
    from integration_hub.adapters.aws.sqs import SqsQueue
    from integration_hub.config import Settings

INSTALL_HINT = (
    "IHUB_DATABASE_URL names DynamoDB, which needs aiobotocore: pip install 'integration-hub[aws]'"
)
USAGE = (
    "IHUB_DATABASE_URL for DynamoDB is dynamodb://<table-prefix>?queue=<SQS queue URL"
    " or name>[&region=…][&endpoint=…]"
)


class DynamoKind:
    """``dynamodb://<table-prefix>?queue=<url or name>&region=…&endpoint=…``."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.prefix = parts.netloc or parts.path.lstrip("/")
        self.queue = query.get("queue", "")
        if not self.prefix or not self.queue:
            raise ConfigurationError(USAGE)
        self.region = query.get("region")
        self.endpoint = query.get("endpoint")

    def local_file(self) -> Path | None:
        """A service, not a file."""
        return None

    async def open(self, settings: Settings, clock: Clock) -> Backend:
        """Clients for the table and the queue; creates the table only on a local endpoint."""
        try:
            from integration_hub.adapters.aws.session import AwsConfig, AwsSession
        except ImportError:
            raise ConfigurationError(INSTALL_HINT) from None
        from integration_hub.adapters.aws import tables
        from integration_hub.adapters.aws.dynamodb import DynamoStore
        from integration_hub.adapters.aws.sqs import SqsQueue

        region = self.region or settings.aws_region or os.environ.get("AWS_REGION")
        endpoint = self.endpoint or settings.aws_endpoint_url
        session = AwsSession(AwsConfig(region=region or "us-east-1", endpoint_url=endpoint))
        name = tables.table_name(self.prefix)
        if settings.auto_migrate and endpoint:
            # Local development (moto_server): create the table; on AWS it comes from CDK.
            await tables.ensure_table(session, name)
        store = DynamoStore(session, name, clock=clock)
        return DynamoBackend(store, SqsQueue(session, self.queue, clock=clock))


class DynamoBackend:
    """A DynamoDB table (store, outbox, secrets) and an SQS queue with its DLQ."""

    def __init__(self, store: DynamoStore, queue: SqsQueue) -> None:
        from integration_hub.adapters.aws.sqs_dlq import SqsDeadLetters

        self.store = store
        self.queue = queue
        self.outbox = store
        self.secrets = store
        # The WebhookStore role (ADR 0021) is the same table and store object.
        self.webhook_store = store
        self.queue_dead_letters: QueueDeadLetters | None = SqsDeadLetters.of(queue)

    async def migrate(self) -> int | None:
        """No versioned schema: the table comes from the CDK stack (docs/aws-deploy.md)."""
        return None

    async def schema_problem(self) -> str | None:
        """Nothing to check: items carry no schema version."""
        return None

    async def purge(self, older_than_seconds: float) -> dict[str, int]:
        """Retention by Scan pages (see ``DynamoStore.purge``), webhooks' items too
        (``purge_webhooks``): the counts of every backend."""
        counts = await self.store.purge(older_than_seconds)
        for name, deleted in (await self.store.purge_webhooks(older_than_seconds)).items():
            counts[name] += deleted
        return counts

    async def reconcile(self, older_than_seconds: float) -> int | None:
        """Re-enqueue notifications whose SQS send was lost after the accept committed."""
        from integration_hub.adapters.aws.reconciler import reconcile

        return await reconcile(self.store, self.queue, older_than_seconds=older_than_seconds)

    async def close(self) -> None:
        """Close the AWS clients (the store's session is shared with the queue)."""
        await self.store.close()
