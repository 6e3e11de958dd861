"""A storage backend, as one object: what a database URL's scheme provides."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from integration_hub.ports.clock import Clock
from integration_hub.ports.outbox import Outbox
from integration_hub.ports.queue import Queue, QueueDeadLetters
from integration_hub.ports.secrets import SecretStore
from integration_hub.ports.store import Store

if TYPE_CHECKING:
    from integration_hub.config import Settings


class Backend(Protocol):
    """An open backend: its store, queue, outbox and secrets, and its maintenance."""

    @property
    def store(self) -> Store:
        """Tenants, keys, idempotency records, notifications, dead letters."""
        ...

    @property
    def queue(self) -> Queue:
        """The queue of notification ids."""
        ...

    @property
    def outbox(self) -> Outbox:
        """The sandbox provider's deliveries."""
        ...

    @property
    def secrets(self) -> SecretStore:
        """Sealed provider settings and wrapped data keys."""
        ...

    @property
    def queue_dead_letters(self) -> QueueDeadLetters | None:
        """The queue service's own DLQ (SQS), apart from the store's dead letters; or None."""
        ...

    async def migrate(self) -> int | None:
        """Bring the schema up to date; its version, or None if the backend has none."""
        ...

    async def schema_problem(self) -> str | None:
        """Why the schema cannot serve this release (a missing migration), or None."""
        ...

    async def purge(self, older_than_seconds: float) -> dict[str, int]:
        """Retention once: rows deleted per table."""
        ...

    async def reconcile(self, older_than_seconds: float) -> int | None:
        """Re-enqueue what an enqueue lost: how many; None where accepting enqueues
        in the same transaction, so nothing can be lost."""
        ...

    async def close(self) -> None:
        """Release connections and clients."""
        ...


class BackendKind(Protocol):
    """What a database URL names, known without opening anything."""

    def local_file(self) -> Path | None:
        """The one file the database lives in (embedded backends), or None.

        The embedded default keeps its master key and outcome journal beside it,
        and creates the master key on first use.
        """
        ...

    async def open(self, settings: Settings, clock: Clock) -> Backend:
        """Connect (and migrate, where the settings say so)."""
        ...
