"""The exposition: this process's metrics (or every process's), plus gauges read at scrape time.

Queue depth, the oldest message's age and the number of dead letters live in
the store, not in any one process: they are read when Prometheus scrapes,
through the async ports (never blocking the event loop), and cached for
``ttl_seconds`` so that several scrapers, or a fast ``ihub top``, cost one
query per period.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from integration_hub.adapters.metrics.hub import HubMetrics
from integration_hub.ports import Queue, QueueStats, Store
from integration_hub.ports.webhooks import WebhookStats

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The shared directory of prometheus-client's multiprocess mode, if it is on."""
    return os.environ.get(MULTIPROC_ENV) or None


@dataclass(frozen=True, slots=True)
class StateSample:
    """What the store and queue said at one scrape."""

    queue: QueueStats | None
    dead_letters: int | None
    seconds: float
    webhooks: WebhookStats | None = None
    """None where the backend keeps no webhooks, or the read failed."""


def webhook_gauges(stats: WebhookStats) -> Iterable[Metric]:
    """The webhook queue as the store reports it."""
    yield GaugeMetricFamily(
        "ihub_webhook_deliveries_pending",
        "Webhook deliveries waiting for an attempt or being attempted",
        value=stats.pending,
    )
    yield GaugeMetricFamily(
        "ihub_webhook_oldest_due_age_seconds",
        "How long the oldest due webhook delivery has waited (0 when none is due)",
        value=stats.oldest_due_age_seconds,
    )
    yield GaugeMetricFamily(
        "ihub_webhook_events_unfanned",
        "Webhook events not yet fanned out to their endpoints",
        value=stats.unfanned_events,
    )
    yield GaugeMetricFamily(
        "ihub_webhook_endpoints_disabled",
        "Webhook endpoints disabled (by the tenant, gone or failing)",
        value=stats.disabled_endpoints,
    )


class StateGauges(Collector):
    """Gauges of the store's state, refreshed by ``refresh()`` at most once per ``ttl``."""

    def __init__(self, store: Store, queue: Queue, *, ttl_seconds: float = 2.0) -> None:
        self.store = store
        self.queue = queue
        self.ttl = ttl_seconds
        self.sample: StateSample | None = None
        self._taken_at = float("-inf")
        self._lock = asyncio.Lock()

    async def refresh(self) -> StateSample | None:
        """Read queue stats and the dead-letter count unless the cached ones are fresh."""
        async with self._lock:
            if time.monotonic() - self._taken_at < self.ttl:
                return self.sample
            t0 = time.perf_counter()
            stats: QueueStats | None = None
            dead: int | None = None
            try:
                stats = await self.queue.stats()
            except Exception as exc:  # the store is down: say so, with ihub_store_up 0
                log.warning("metrics: queue stats failed: %s", exc)
            try:
                dead = await self.store.count_dead_letters()
            except Exception as exc:
                log.warning("metrics: counting dead letters failed: %s", exc)
            hooks: WebhookStats | None = None
            try:
                hooks = await self.store.webhook_stats()
            except Exception as exc:
                log.warning("metrics: webhook stats failed: %s", exc)
            self.sample = StateSample(stats, dead, time.perf_counter() - t0, hooks)
            self._taken_at = time.monotonic()
            return self.sample

    def describe(self) -> Iterable[Metric]:
        """Nothing up front: collect() is cheap, it reads the cached sample."""
        return []

    def collect(self) -> Iterable[Metric]:
        """The cached sample as gauges; a failed read leaves its gauges out."""
        sample = self.sample
        up = GaugeMetricFamily(
            "ihub_store_up",
            "1 when the last scrape-time read of the queue and dead letters succeeded",
        )
        ok = sample is not None and sample.queue is not None and sample.dead_letters is not None
        up.add_metric([], 1.0 if ok else 0.0)
        yield up
        if sample is None:
            return
        if sample.queue is not None:
            depth = GaugeMetricFamily(
                "ihub_queue_messages",
                "Queue entries: visible (ready), in_flight (leased), delayed (retry backoff)",
                labels=["state"],
            )
            depth.add_metric(["visible"], sample.queue.visible)
            depth.add_metric(["in_flight"], sample.queue.in_flight)
            depth.add_metric(["delayed"], sample.queue.delayed)
            yield depth
            yield GaugeMetricFamily(
                "ihub_queue_oldest_message_age_seconds",
                "Age of the oldest queue entry (0 when empty; SQS does not report it)",
                value=sample.queue.oldest_age_seconds,
            )
        if sample.dead_letters is not None:
            yield GaugeMetricFamily(
                "ihub_dead_letters",
                "Notifications FAILED and dead-lettered, not yet redriven (the DLQ depth)",
                value=sample.dead_letters,
            )
        if sample.webhooks is not None:
            yield from webhook_gauges(sample.webhooks)
        yield GaugeMetricFamily(
            "ihub_store_scrape_duration_seconds",
            "How long the last scrape-time read of the store took",
            value=sample.seconds,
        )


class MetricsExporter:
    """Renders the text exposition of a hub process."""

    def __init__(self, metrics: HubMetrics, state: StateGauges) -> None:
        self.metrics = metrics
        self.state = state
        self.multiprocess = multiprocess_dir() is not None
        if self.multiprocess:
            # Every process writes its values to files; the scraped one adds
            # them up. Process and GC collectors would describe only the
            # scraped process, so they are left out.
            self.registry = CollectorRegistry()
            # prometheus-client leaves these two functions unannotated.
            multiprocess.MultiProcessCollector(self.registry)  # type: ignore[no-untyped-call]
        else:
            self.registry = metrics.registry
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)
        self.registry.register(state)

    async def render(self) -> bytes:
        """The text exposition, with the store's state at most ``ttl`` old."""
        body, _ = await self.negotiate("")
        return body

    async def negotiate(self, accept: str) -> tuple[bytes, str]:
        """The exposition in the format ``accept`` asks for (OpenMetrics or text), and its type."""
        await self.state.refresh()
        encode, content_type = choose_encoder(accept)
        # Rendering is CPU work of a millisecond or so for our few hundred
        # series: not worth a thread hop (and multiprocess files are small).
        return encode(self.registry), content_type

    def close(self) -> None:
        """Mark this process dead, so its live gauges stop counting (multiprocess mode)."""
        if self.multiprocess:
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
