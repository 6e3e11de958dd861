"""The composition root: the one place that reads Settings and wires adapters."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from integration_hub.config import Settings
from integration_hub.domain.outbound import OutboundPolicy
from integration_hub.domain.retry import RetryPolicy
from integration_hub.domain.routing import Channel
from integration_hub.ports import (
    Clock,
    KeyRing,
    Outbox,
    OutcomeJournal,
    Provider,
    ProviderDirectory,
    Queue,
    QueueDeadLetters,
    SecretStore,
    Store,
    SystemClock,
)
from integration_hub.service.dispatch import Dispatcher, DispatchSettings
from integration_hub.service.ingest import IngestPolicy, IngestService
from integration_hub.service.tenants import ApiKeyCache, TenantCache

if TYPE_CHECKING:
    from integration_hub.adapters.crypto.envelope import EncryptedCredentials
    from integration_hub.adapters.metrics import MetricsExporter

log = logging.getLogger(__name__)


class ConfigurationError(Exception):
    """The settings name something this installation cannot provide."""


def outbound_policy(settings: Settings) -> OutboundPolicy:
    """The outbound rule for provider connections, as the settings widen it."""
    return OutboundPolicy.of(
        settings.provider_allowed_networks.split(","), allow_http=settings.provider_allow_http
    )


@dataclass
class Hub:
    """Everything a process of the hub needs, wired once."""

    settings: Settings
    clock: Clock
    store: Store
    queue: Queue
    outbox: Outbox
    credentials: EncryptedCredentials
    providers: ProviderDirectory
    ingest: IngestService
    dispatcher: Dispatcher
    tenants: TenantCache
    keys: ApiKeyCache
    purge: Callable[[float], Awaitable[dict[str, int]]]
    # The queue service's own DLQ (SQS), apart from the store's dead letters.
    queue_dead_letters: QueueDeadLetters | None = None
    metrics: MetricsExporter | None = None
    # What /readyz asks besides store and queue: None when the schema is
    # current, else why not (PostgreSQL: a migration this release needs is missing).
    schema_check: Callable[[], Awaitable[str | None]] | None = None
    _closed: bool = field(default=False, repr=False)

    async def close(self) -> None:
        """Close providers, then the store (which owns the connections)."""
        if self._closed:
            return
        self._closed = True
        if self.metrics is not None:
            self.metrics.close()
        await self.providers.close()
        await self.credentials.close()
        await self.store.close()


def retry_policy(settings: Settings) -> RetryPolicy:
    """The hub-wide default retry policy."""
    return RetryPolicy(
        max_attempts=settings.max_attempts,
        base_seconds=settings.backoff_base_seconds,
        cap_seconds=max(settings.backoff_cap_seconds, settings.backoff_base_seconds),
    )


Backend = tuple[Store, Queue, Outbox, SecretStore]


async def _sqlite_backend(settings: Settings, clock: Clock) -> Backend:
    from integration_hub.adapters.sqlite.credentials import SqliteCredentials
    from integration_hub.adapters.sqlite.database import SqliteDatabase, path_from_url
    from integration_hub.adapters.sqlite.queue import SqliteOutbox, SqliteQueue
    from integration_hub.adapters.sqlite.store import SqliteStore

    db = SqliteDatabase(
        path_from_url(settings.database_url),
        clock=clock,
        busy_timeout_ms=round(settings.sqlite_busy_timeout_seconds * 1000),
    )
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


def _postgres_schema_check(store: Store) -> Callable[[], Awaitable[str | None]]:
    from integration_hub.adapters.postgres.database import migrations
    from integration_hub.adapters.postgres.store import PostgresStore

    assert isinstance(store, PostgresStore)
    db, needed = store.db, migrations()[-1].version

    async def check() -> str | None:
        version = await db.schema_version()
        if version < needed:
            return f"the schema is at version {version}, this release needs {needed}: ihub migrate"
        return None

    return check


async def _aws_backend(settings: Settings, clock: Clock) -> Backend:
    """``dynamodb://<table-prefix>?queue=<url or name>&region=…&endpoint=…`` (docs/aws.md)."""
    import os
    from urllib.parse import parse_qs, urlsplit

    try:
        from integration_hub.adapters.aws.session import AwsConfig, AwsSession
    except ImportError:
        raise ConfigurationError(
            "IHUB_DATABASE_URL names DynamoDB, which needs aiobotocore:"
            " pip install 'integration-hub[aws]'"
        ) from None
    from integration_hub.adapters.aws import tables
    from integration_hub.adapters.aws.dynamodb import DynamoStore
    from integration_hub.adapters.aws.sqs import SqsQueue

    url = urlsplit(settings.database_url)
    query = {k: v[-1] for k, v in parse_qs(url.query).items()}
    prefix = url.netloc or url.path.lstrip("/")
    if not prefix or not query.get("queue"):
        raise ConfigurationError(
            "IHUB_DATABASE_URL for DynamoDB is dynamodb://<table-prefix>?queue=<SQS queue URL"
            " or name>[&region=…][&endpoint=…]"
        )
    region = query.get("region") or settings.aws_region or os.environ.get("AWS_REGION")
    session = AwsSession(
        AwsConfig(
            region=region or "us-east-1",
            endpoint_url=query.get("endpoint") or settings.aws_endpoint_url,
        )
    )
    name = tables.table_name(prefix)
    if settings.auto_migrate and (query.get("endpoint") or settings.aws_endpoint_url):
        # Local development (moto_server): create the table; on AWS it comes from CDK.
        await tables.ensure_table(session, name)
    store = DynamoStore(session, name, clock=clock)
    return store, SqsQueue(session, query["queue"], clock=clock), store, store


def master_key_path(settings: Settings) -> Path | None:
    """Where the master key file is: configured, or beside the SQLite file."""
    if settings.master_key_file:
        return Path(settings.master_key_file)
    if settings.database_url.startswith("sqlite:"):
        from integration_hub.adapters.sqlite.database import path_from_url

        return path_from_url(settings.database_url).with_suffix(".master.key")
    return None


def keyring(settings: Settings) -> KeyRing:
    """The master key ring the settings name; the embedded default creates its file."""
    from integration_hub.adapters.crypto.local import (
        KeyFile,
        KeyRingError,
        LocalKeyRing,
        parse_env_keys,
    )

    if settings.kms_key_id:
        from integration_hub.adapters.crypto.kms import KmsKeyRing

        # Region, endpoint and credentials come from the standard AWS settings.
        return KmsKeyRing(settings.kms_key_id)
    if settings.master_key is not None:
        primary, keys = parse_env_keys(settings.master_key.get_secret_value())
        return LocalKeyRing(primary, keys)
    path = master_key_path(settings)
    if path is None:
        raise KeyRingError(
            "provider credentials need a master key: set IHUB_MASTER_KEY or IHUB_MASTER_KEY_FILE"
        )
    key_file = KeyFile(path)
    if not key_file.exists():
        if settings.master_key_file or not settings.database_url.startswith("sqlite:"):
            raise KeyRingError(f"the master key file {path} does not exist")
        if key_file.create_if_absent():
            log.warning(
                "generated the master key file %s (mode 0600): back it up; without it the"
                " stored provider credentials cannot be read",
                path,
            )
    return LocalKeyRing.from_file(key_file)


def check_metrics_directory() -> None:
    """Refuse a PROMETHEUS_MULTIPROC_DIR that is not a directory, before opening anything."""
    from integration_hub.adapters.metrics.export import multiprocess_dir

    shared = multiprocess_dir()
    if shared is not None and not Path(shared).is_dir():
        # prometheus-client would fail later, on a file name in that directory.
        raise ConfigurationError(
            f"PROMETHEUS_MULTIPROC_DIR names {shared}, which is not a directory:"
            " create it (empty) before starting the hub's processes"
        )


def metrics_exporter(settings: Settings, store: Store, queue: Queue) -> MetricsExporter:
    """The process's Prometheus metrics, with the store's state read at scrape time."""
    from integration_hub.adapters.metrics import HubMetrics, MetricsExporter, TenantLabelPolicy
    from integration_hub.adapters.metrics.export import StateGauges

    tenant_label = TenantLabelPolicy.parse(settings.metrics_tenant_label).guard()
    return MetricsExporter(HubMetrics(tenant_label), StateGauges(store, queue))


def journal_directory(settings: Settings) -> Path:
    """Where this machine's workers keep their outcome journal."""
    if settings.worker_journal_dir:
        return Path(settings.worker_journal_dir)
    if settings.database_url.lower().startswith("sqlite:"):
        from integration_hub.adapters.sqlite.database import path_from_url

        database = path_from_url(settings.database_url)
        return database.with_name(database.name + ".outcomes")
    return Path("ihub-outcomes")


def open_journal(settings: Settings) -> OutcomeJournal | None:
    """A worker's outcome journal (taking over what stopped workers left), unless off."""
    if not settings.worker_journal:
        return None
    from integration_hub.adapters.journal import FileJournal

    directory = journal_directory(settings)
    try:
        return FileJournal.open(directory)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot open the outcome journal in {directory}: {exc.strerror or exc}"
            " (IHUB_WORKER_JOURNAL_DIR, or IHUB_WORKER_JOURNAL=false to run without it)"
        ) from None


async def build_hub(settings: Settings, *, clock: Clock | None = None) -> Hub:
    """Open the backend named by ``settings.database_url`` and wire the services."""
    clock = clock or SystemClock()
    check_metrics_directory()
    scheme = settings.database_url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        store, queue, outbox, credentials = await _sqlite_backend(settings, clock)
    elif scheme in ("postgres", "postgresql"):
        store, queue, outbox, credentials = await _postgres_backend(settings, clock)
    elif scheme == "dynamodb":
        store, queue, outbox, credentials = await _aws_backend(settings, clock)
    else:
        raise ConfigurationError(
            f"unsupported IHUB_DATABASE_URL scheme {scheme!r}: use sqlite:///path/to/file.db"
            " or postgresql://user@host:5432/database"
            " or dynamodb://<table-prefix>?queue=<SQS queue>"
        )

    from integration_hub.adapters.crypto.envelope import EncryptedCredentials
    from integration_hub.adapters.providers.registry import ProviderRegistry

    sealed = EncryptedCredentials(credentials, credentials, lambda: keyring(settings))
    from integration_hub.adapters.providers.sandbox import SandboxProvider

    sandbox: dict[Channel, Provider] = {channel: SandboxProvider(channel) for channel in Channel}
    providers = ProviderRegistry(
        sealed,
        sandbox,
        clock,
        ttl_seconds=settings.tenant_cache_seconds,
        outbound=outbound_policy(settings),
    )
    tenants = TenantCache(store, clock, settings.tenant_cache_seconds)
    exporter = metrics_exporter(settings, store, queue)
    ingest = IngestService(
        store,
        queue,
        clock,
        IngestPolicy(
            ttl_seconds=settings.idempotency_ttl_seconds,
            lock_seconds=settings.idempotency_lock_seconds,
        ),
        metrics=exporter.metrics,
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
        metrics=exporter.metrics,
    )
    queue_dead_letters: QueueDeadLetters | None = None
    if scheme == "sqlite":
        from integration_hub.adapters.sqlite import retention as sqlite_retention

        purge_backend = sqlite_retention.purge
    elif scheme == "dynamodb":
        from integration_hub.adapters.aws import dynamodb as aws_retention
        from integration_hub.adapters.aws.sqs import SqsQueue
        from integration_hub.adapters.aws.sqs_dlq import SqsDeadLetters

        purge_backend = aws_retention.purge
        if isinstance(queue, SqsQueue):
            queue_dead_letters = SqsDeadLetters.of(queue)
    else:
        from integration_hub.adapters.postgres import retention as pg_retention

        purge_backend = pg_retention.purge

    schema_check = _postgres_schema_check(store) if scheme in ("postgres", "postgresql") else None

    async def purge(older_than_seconds: float) -> dict[str, int]:
        return await purge_backend(store, older_than_seconds=older_than_seconds)

    return Hub(
        settings,
        clock,
        store,
        queue,
        outbox,
        sealed,
        providers,
        ingest,
        dispatcher,
        tenants,
        ApiKeyCache(store, clock, settings.tenant_cache_seconds),
        purge,
        queue_dead_letters,
        metrics=exporter,
        schema_check=schema_check,
    )
