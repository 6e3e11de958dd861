"""What the SQLite and PostgreSQL backends share: one database holds everything."""

from __future__ import annotations

from integration_hub.ports import Outbox, Queue, QueueDeadLetters, SecretStore, Store


class SqlBackend:
    """Store, queue, outbox and secrets in one SQL database.

    The queue lives in the database, so a notification and its queue entry
    commit together: there is nothing to reconcile and no queue-side dead
    letters (the store's dead letters are the only ones). Migrations, the
    schema check and retention differ per database and stay in subclasses.
    """

    queue_dead_letters: QueueDeadLetters | None = None

    def __init__(self, store: Store, queue: Queue, outbox: Outbox, secrets: SecretStore) -> None:
        self.store = store
        self.queue = queue
        self.outbox = outbox
        self.secrets = secrets

    async def reconcile(self, older_than_seconds: float) -> int | None:
        """Nothing to reconcile: accepting enqueues in the same transaction."""
        return None

    async def close(self) -> None:
        """Close the database (the store owns its connections)."""
        await self.store.close()
