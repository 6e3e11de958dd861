"""The composition root: the one place that reads Settings and wires adapters."""

from __future__ import annotations

from dataclasses import dataclass, field

from integration_hub.config import Settings
from integration_hub.domain.retry import RetryPolicy
from integration_hub.domain.routing import Channel
from integration_hub.ports import Clock, Outbox, Provider, Queue, Store, SystemClock
from integration_hub.service.dispatch import Dispatcher, DispatchSettings
from integration_hub.service.ingest import IngestPolicy, IngestService
from integration_hub.service.tenants import TenantCache


class ConfigurationError(Exception):
    """The settings name something this installation cannot provide."""


@dataclass
class Hub:
    """Everything a process of the hub needs, wired once."""

    settings: Settings
    clock: Clock
    store: Store
    queue: Queue
    outbox: Outbox
    providers: dict[tuple[Channel, str], Provider]
    ingest: IngestService
    dispatcher: Dispatcher
    tenants: TenantCache
    _closed: bool = field(default=False, repr=False)

    async def close(self) -> None:
        """Close providers, then the store (which owns the connections)."""
        if self._closed:
            return
        self._closed = True
        for provider in self.providers.values():
            await provider.close()
        await self.store.close()


def retry_policy(settings: Settings) -> RetryPolicy:
    """The hub-wide default retry policy."""
    return RetryPolicy(
        max_attempts=settings.max_attempts,
        base_seconds=settings.backoff_base_seconds,
        cap_seconds=max(settings.backoff_cap_seconds, settings.backoff_base_seconds),
    )


async def _sqlite_backend(settings: Settings, clock: Clock) -> tuple[Store, Queue, Outbox]:
    from integration_hub.adapters.sqlite.database import SqliteDatabase, path_from_url
    from integration_hub.adapters.sqlite.queue import SqliteOutbox, SqliteQueue
    from integration_hub.adapters.sqlite.store import SqliteStore

    db = SqliteDatabase(path_from_url(settings.database_url), clock=clock)
    await db.migrate()
    return SqliteStore(db), SqliteQueue(db), SqliteOutbox(db)


async def build_hub(settings: Settings, *, clock: Clock | None = None) -> Hub:
    """Open the backend named by ``settings.database_url`` and wire the services."""
    clock = clock or SystemClock()
    scheme = settings.database_url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        store, queue, outbox = await _sqlite_backend(settings, clock)
    else:
        raise ConfigurationError(
            f"unsupported IHUB_DATABASE_URL scheme {scheme!r}: this version supports"
            " sqlite:///path/to/file.db"
        )

    from integration_hub.adapters.providers.sandbox import SandboxProvider

    providers: dict[tuple[Channel, str], Provider] = {
        (channel, "sandbox"): SandboxProvider(outbox, channel) for channel in Channel
    }
    tenants = TenantCache(store, clock, settings.tenant_cache_seconds)
    ingest = IngestService(
        store,
        queue,
        clock,
        IngestPolicy(
            ttl_seconds=settings.idempotency_ttl_seconds,
            lock_seconds=settings.idempotency_lock_seconds,
        ),
    )
    dispatcher = Dispatcher(
        store,
        queue,
        providers,
        clock,
        retry_policy(settings),
        tenants,
        DispatchSettings(
            lease_seconds=settings.visibility_timeout_seconds,
            provider_timeout_seconds=settings.provider_timeout_seconds,
        ),
    )
    return Hub(settings, clock, store, queue, outbox, providers, ingest, dispatcher, tenants)
