"""The composition root: the one place that reads Settings and wires adapters."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from integration_hub.adapters.backends import kind_of
from integration_hub.config import ConfigurationError as ConfigurationError  # re-exported
from integration_hub.config import Settings
from integration_hub.domain.outbound import OutboundPolicy
from integration_hub.domain.retry import RetryPolicy
from integration_hub.domain.routing import Channel
from integration_hub.domain.webhooks import DisablePolicy
from integration_hub.ports import (
    Backend,
    Clock,
    KeyRing,
    Outbox,
    OutcomeJournal,
    Provider,
    ProviderDirectory,
    Queue,
    QueueDeadLetters,
    Store,
    SystemClock,
)
from integration_hub.service.dispatch import Dispatcher, DispatchSettings
from integration_hub.service.ingest import IngestPolicy, IngestService
from integration_hub.service.receipts import ReceiptPolicy, ReceiptService, SuppressionCheck
from integration_hub.service.tenants import ApiKeyCache, TenantCache
from integration_hub.service.webhooks.manage import WebhookService

if TYPE_CHECKING:
    from integration_hub.adapters.crypto.envelope import EncryptedCredentials
    from integration_hub.adapters.metrics import MetricsExporter
    from integration_hub.adapters.receipts.sns import SnsVerifier
    from integration_hub.ports.webhooks import WebhookStore
    from integration_hub.service.webhooks.deliver import DeliveryLoopSettings, WebhookDeliverer

log = logging.getLogger(__name__)


def outbound_policy(settings: Settings) -> OutboundPolicy:
    """The outbound rule for provider connections, as the settings widen it."""
    return OutboundPolicy.of(
        settings.provider_allowed_networks.split(","), allow_http=settings.provider_allow_http
    )


def webhook_outbound_policy(settings: Settings) -> OutboundPolicy:
    """The outbound rule for tenants' webhook endpoints (its own settings)."""
    return OutboundPolicy.of(
        settings.webhooks_allowed_networks.split(","),
        allow_http=settings.webhooks_allow_http,
        setting="IHUB_WEBHOOKS_ALLOWED_NETWORKS",
        http_setting="IHUB_WEBHOOKS_ALLOW_HTTP",
    )


def disable_policy(settings: Settings) -> DisablePolicy:
    """When a failing webhook endpoint is disabled."""
    return DisablePolicy(
        failing_seconds=settings.webhooks_disable_after_days * 86400.0,
        consecutive_failures=settings.webhooks_disable_after_failures,
    )


def delivery_loop_settings(settings: Settings) -> DeliveryLoopSettings:
    """The webhook delivery loop's budget and pace."""
    from integration_hub.service.webhooks.deliver import DeliveryLoopSettings

    return DeliveryLoopSettings(
        concurrency=settings.webhooks_concurrency,
        per_endpoint=settings.webhooks_per_endpoint,
        per_tenant=settings.webhooks_per_tenant,
        timeout_seconds=settings.webhooks_timeout_seconds,
        poll_interval_seconds=settings.webhooks_poll_interval_seconds,
        disable=disable_policy(settings),
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
    receipts: ReceiptService
    # The queue service's own DLQ (SQS), apart from the store's dead letters.
    queue_dead_letters: QueueDeadLetters | None = None
    metrics: MetricsExporter | None = None
    # What /readyz asks besides store and queue: None when the schema is
    # current, else why not (PostgreSQL: a migration this release needs is missing).
    schema_check: Callable[[], Awaitable[str | None]] | None = None
    # The backend itself, for its maintenance (migrate, reconcile) from the CLI.
    backend: Backend | None = None
    # Verifies SNS messages for the SES receipt endpoint: one per process, so
    # that its certificate cache is shared (made on first use).
    sns_verifier: SnsVerifier | None = None
    _closed: bool = field(default=False, repr=False)

    @property
    def webhook_store(self) -> WebhookStore:
        """The store's webhook role."""
        return self.store

    @cached_property
    def webhook_service(self) -> WebhookService:
        """Tenants' webhook endpoints (one per hub: its endpoint cap is checked under a lock)."""
        return WebhookService(
            self.webhook_store,
            self.credentials,
            self.clock,
            webhook_outbound_policy(self.settings),
            rotation_overlap_seconds=self.settings.webhooks_rotation_overlap_hours * 3600.0,
        )

    def webhook_deliverer(self) -> WebhookDeliverer:
        """A delivery loop for the tenants' webhooks, with its own HTTP connections."""
        from integration_hub.adapters.webhooks import AiohttpWebhookTransport
        from integration_hub.service.webhooks.deliver import WebhookDeliverer

        transport = AiohttpWebhookTransport(
            webhook_outbound_policy(self.settings),
            timeout_seconds=self.settings.webhooks_timeout_seconds,
        )
        return WebhookDeliverer(
            self.webhook_store,
            transport,
            self.credentials,
            self.clock,
            delivery_loop_settings(self.settings),
            metrics=None if self.metrics is None else self.metrics.metrics,
        )

    def sns(self) -> SnsVerifier:
        """The process's SNS verifier, trusting what the settings say (production: the system)."""
        if self.sns_verifier is None:
            self.sns_verifier = sns_verifier(self.settings)
        return self.sns_verifier

    async def close(self) -> None:
        """Close providers, then the store (which owns the connections)."""
        if self._closed:
            return
        self._closed = True
        if self.metrics is not None:
            self.metrics.close()
        if self.sns_verifier is not None:
            await self.sns_verifier.close()
        await self.providers.close()
        await self.credentials.close()
        await self.store.close()


def sns_verifier(settings: Settings) -> SnsVerifier:
    """An SNS verifier: the system's CA and DNS, unless the test-only settings are set."""
    from integration_hub.adapters.receipts.sns import CertFetch, SnsVerifier

    connect_to: tuple[str, int] | None = None
    if settings.sns_test_connect_to:
        host, _, port = settings.sns_test_connect_to.rpartition(":")
        connect_to = (host, int(port))
    return SnsVerifier(CertFetch(ca_file=settings.sns_test_ca_file, connect_to=connect_to))


def receipt_policy(settings: Settings) -> ReceiptPolicy:
    """The receipt timeout and the inbound keyword lists."""
    return ReceiptPolicy(
        timeout=settings.receipt_timeout, opt_out=settings.opt_out, opt_in=settings.opt_in
    )


def retry_policy(settings: Settings) -> RetryPolicy:
    """The hub-wide default retry policy."""
    return RetryPolicy(
        max_attempts=settings.max_attempts,
        base_seconds=settings.backoff_base_seconds,
        cap_seconds=max(settings.backoff_cap_seconds, settings.backoff_base_seconds),
    )


def master_key_path(settings: Settings) -> Path | None:
    """Where the master key file is: configured, or beside the SQLite file."""
    if settings.master_key_file:
        return Path(settings.master_key_file)
    database = kind_of(settings.database_url).local_file()
    return database.with_suffix(".master.key") if database is not None else None


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
        embedded = kind_of(settings.database_url).local_file() is not None
        if settings.master_key_file or not embedded:
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
    database = kind_of(settings.database_url).local_file()
    if database is not None:
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
    backend = await kind_of(settings.database_url).open(settings, clock)
    store, queue, credentials = backend.store, backend.queue, backend.secrets

    from integration_hub.adapters.crypto.envelope import EncryptedCredentials
    from integration_hub.adapters.providers.registry import ProviderRegistry

    sealed = EncryptedCredentials(credentials, credentials, lambda: keyring(settings))
    from integration_hub.adapters.providers.sandbox import SandboxProvider

    sandboxes = {channel: SandboxProvider(channel) for channel in Channel}
    sandbox: dict[Channel, Provider] = dict(sandboxes)
    providers = ProviderRegistry(
        sealed,
        sandbox,
        clock,
        ttl_seconds=settings.tenant_cache_seconds,
        outbound=outbound_policy(settings),
        public_url=settings.public_url,
    )
    tenants = TenantCache(store, clock, settings.tenant_cache_seconds)
    exporter = metrics_exporter(settings, store, queue)
    suppressions = SuppressionCheck(store)
    ingest = IngestService(
        store,
        queue,
        clock,
        IngestPolicy(
            ttl_seconds=settings.idempotency_ttl_seconds,
            lock_seconds=settings.idempotency_lock_seconds,
        ),
        metrics=exporter.metrics,
        suppressions=suppressions,
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
        suppressions=suppressions,
    )
    receipts = ReceiptService(store, clock, exporter.metrics, receipt_policy(settings))
    for provider in sandboxes.values():
        # The sandbox's receipts take the real callbacks' path (closed with the registry).
        provider.emit_to(receipts.record)
    return Hub(
        settings,
        clock,
        store,
        queue,
        backend.outbox,
        sealed,
        providers,
        ingest,
        dispatcher,
        tenants,
        ApiKeyCache(store, clock, settings.tenant_cache_seconds),
        backend.purge,
        receipts,
        backend.queue_dead_letters,
        metrics=exporter,
        schema_check=backend.schema_problem,
        backend=backend,
    )
