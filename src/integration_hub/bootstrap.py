"""The composition root: the one place that reads Settings and wires adapters."""

from __future__ import annotations

from dataclasses import dataclass, field

from integration_hub.config import Settings
from integration_hub.domain.retry import RetryPolicy
from integration_hub.domain.routing import Channel
from integration_hub.ports import (
    Clock,
    CredentialStore,
    Outbox,
    Provider,
    ProviderDirectory,
    Queue,
    Store,
    SystemClock,
)
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
    credentials: CredentialStore
    providers: ProviderDirectory
    ingest: IngestService
    dispatcher: Dispatcher
    tenants: TenantCache
    _closed: bool = field(default=False, repr=False)

    async def close(self) -> None:
        """Close providers, then the store (which owns the connections)."""
        if self._closed:
            return
        self._closed = True
        await self.providers.close()
        await self.store.close()


def retry_policy(settings: Settings) -> RetryPolicy:
    """The hub-wide default retry policy."""
    return RetryPolicy(
        max_attempts=settings.max_attempts,
        base_seconds=settings.backoff_base_seconds,
        cap_seconds=max(settings.backoff_cap_seconds, settings.backoff_base_seconds),
    )


Backend = tuple[Store, Queue, Outbox, CredentialStore]


async def _sqlite_backend(settings: Settings, clock: Clock) -> Backend:
    from integration_hub.adapters.sqlite.credentials import SqliteCredentials
    from integration_hub.adapters.sqlite.database import SqliteDatabase, path_from_url
    from integration_hub.adapters.sqlite.queue import SqliteOutbox, SqliteQueue
    from integration_hub.adapters.sqlite.store import SqliteStore

    db = SqliteDatabase(path_from_url(settings.database_url), clock=clock)
    await db.migrate()
    return SqliteStore(db), SqliteQueue(db), SqliteOutbox(db), SqliteCredentials(db)


async def _postgres_backend(settings: Settings, clock: Clock) -> Backend:
    try:
        from integration_hub.adapters.postgres.database import PostgresDatabase, migrations
    except ModuleNotFoundError as exc:
        if exc.name != "asyncpg":
            raise
        raise ConfigurationError(
            "IHUB_DATABASE_URL names PostgreSQL, which needs asyncpg:"
            " pip install 'integration-hub[postgres]'"
        ) from None
    from integration_hub.adapters.postgres.credentials import PostgresCredentials
    from integration_hub.adapters.postgres.queue import PostgresOutbox, PostgresQueue
    from integration_hub.adapters.postgres.store import PostgresStore

    db = PostgresDatabase(
        settings.database_url,
        clock=clock,
        max_size=settings.database_pool_size,
        timeout=settings.database_timeout_seconds,
    )
    await db.open()
    try:
        if settings.auto_migrate:
            await db.migrate()
        else:
            version, needed = await db.schema_version(), migrations()[-1].version
            if version < needed:
                raise ConfigurationError(
                    f"the database schema is at version {version} and this release needs"
                    f" {needed}: run `ihub migrate` (or set IHUB_AUTO_MIGRATE=true)"
                )
    except BaseException:
        await db.close()
        raise
    return PostgresStore(db), PostgresQueue(db), PostgresOutbox(db), PostgresCredentials(db)


async def build_hub(settings: Settings, *, clock: Clock | None = None) -> Hub:
    """Open the backend named by ``settings.database_url`` and wire the services."""
    clock = clock or SystemClock()
    scheme = settings.database_url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        store, queue, outbox, credentials = await _sqlite_backend(settings, clock)
    elif scheme in ("postgres", "postgresql"):
        store, queue, outbox, credentials = await _postgres_backend(settings, clock)
    else:
        raise ConfigurationError(
            f"unsupported IHUB_DATABASE_URL scheme {scheme!r}: use sqlite:///path/to/file.db"
            " or postgresql://user@host:5432/database"
        )

    from integration_hub.adapters.providers.registry import ProviderRegistry
    from integration_hub.adapters.providers.sandbox import SandboxProvider

    sandbox: dict[Channel, Provider] = {
        channel: SandboxProvider(outbox, channel) for channel in Channel
    }
    providers = ProviderRegistry(
        credentials, sandbox, clock, ttl_seconds=settings.tenant_cache_seconds
    )
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
    return Hub(
        settings, clock, store, queue, outbox, credentials, providers, ingest, dispatcher, tenants
    )
