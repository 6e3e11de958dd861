"""The metrics one hub process counts: the ``Metrics`` port plus HTTP and worker hooks."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from integration_hub.adapters.metrics import labels
from integration_hub.domain import errors
from integration_hub.domain.delivery import Delivered, DeliveryResult
from integration_hub.domain.models import Notification
from integration_hub.domain.status import Status
from integration_hub.domain.webhooks import AttemptOutcome, DisabledReason

log = logging.getLogger(__name__)

# A webhook attempt is cut at IHUB_WEBHOOKS_TIMEOUT_SECONDS (15 s, at most 60).
WEBHOOK_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0)
WEBHOOK_OUTCOMES = frozenset(str(o) for o in AttemptOutcome)
WEBHOOK_DISABLE_REASONS = (str(DisabledReason.GONE), str(DisabledReason.FAILING))

# Provider calls: a sandbox answers in under a millisecond, a slow SMTP relay
# in seconds, and the call is cut at IHUB_PROVIDER_TIMEOUT_SECONDS (20 s).
PROVIDER_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0)
# Accept to finish includes queueing and retry backoff: up to many minutes.
DELIVERY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
# API requests: an accepted notification is one or two store transactions.
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

# Provider accepted -> handset or mailbox: seconds for SMS, up to days for a
# phone that is off (IHUB_RECEIPT_TIMEOUT_HOURS, 72 h by default, ends the wait).
RECEIPT_BUCKETS = (
    1.0,
    5.0,
    15.0,
    60.0,
    300.0,
    900.0,
    3600.0,
    6 * 3600.0,
    86400.0,
    3 * 86400.0,
    7 * 86400.0,
)
RECEIPT_STATES = ("sent", "delivered", "read", "undelivered", "bounced", "complained", "expired")
REJECT_REASONS = ("signature", "malformed", "too_large", "untrusted")

HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


class HubMetrics:
    """Counters, histograms and the in-flight gauge of one process.

    Implements the ``Metrics`` port. In prometheus-client's multiprocess mode
    (PROMETHEUS_MULTIPROC_DIR set) the values go to files in that directory
    and ``MetricsExporter`` adds every process's up; otherwise they live in
    ``registry``.
    """

    def __init__(
        self, tenant_label: labels.TenantLabel, registry: CollectorRegistry | None = None
    ) -> None:
        # The *_created series (a counter's start time) double the series
        # count and no dashboard or alert of ours reads them.
        disable_created_metrics()  # type: ignore[no-untyped-call]  # unannotated upstream
        self.registry = registry or CollectorRegistry()
        self._tenant = tenant_label
        self._provider = labels.BoundedLabel(labels.PROVIDER_LIMIT)
        self._error_class = labels.BoundedLabel(labels.ERROR_CLASS_LIMIT)
        self._country = labels.BoundedLabel(labels.COUNTRY_LIMIT)
        self._kind = labels.BoundedLabel(labels.BREACH_KIND_LIMIT)
        r = self.registry
        self.accepted_total = Counter(
            "ihub_notifications_accepted",
            "Notifications accepted by the API (idempotent replays not counted)",
            ["tenant", "country", "channel", "provider"],
            registry=r,
        )
        self.finished_total = Counter(
            "ihub_notifications_finished",
            "Notifications that reached DONE (outcome=done) or FAILED (outcome=failed)",
            ["tenant", "country", "channel", "provider", "outcome"],
            registry=r,
        )
        self.attempts_total = Counter(
            "ihub_attempts",
            "Provider calls by outcome (delivered, transient, permanent, configuration)"
            " and error class",
            ["tenant", "channel", "provider", "outcome", "error_class"],
            registry=r,
        )
        self.provider_seconds = Histogram(
            "ihub_provider_call_duration_seconds",
            "Duration of one provider call",
            ["channel", "provider", "outcome"],
            buckets=PROVIDER_BUCKETS,
            registry=r,
        )
        self.delivery_seconds = Histogram(
            "ihub_notification_duration_seconds",
            "From acceptance to DONE or FAILED, queueing and retries included",
            ["channel", "outcome"],
            buckets=DELIVERY_BUCKETS,
            registry=r,
        )
        self.http_seconds = Histogram(
            "ihub_http_request_duration_seconds",
            "API requests by method, route template and status code",
            ["method", "route", "status"],
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        self.invariant_breaches_total = Counter(
            "ihub_invariant_breaches",
            "Invariant breaches (bugs: the code broke one of its own rules) by kind",
            ["kind"],
            registry=r,
        )
        # Every kind from zero: an alert on increase() sees the first breach,
        # and the family is exposed (multiprocess mode too) before one happens.
        for kind in errors.breach_kinds():
            self.invariant_breaches_total.labels(self._kind(kind))
        self.receipts_total = Counter(
            "ihub_receipts",
            "Delivery receipts recorded as new events, by provider and delivery state",
            ["provider", "state"],
            registry=r,
        )
        self.receipts_unmatched_total = Counter(
            "ihub_receipts_unmatched",
            "Receipts naming no notification of their tenant (nothing changed)",
            ["provider"],
            registry=r,
        )
        self.receipts_duplicate_total = Counter(
            "ihub_receipts_duplicate",
            "Receipts repeating an event already recorded (nothing changed)",
            ["provider"],
            registry=r,
        )
        self.receipts_rejected_total = Counter(
            "ihub_receipts_rejected",
            "Receipt requests refused: signature, malformed, too_large or untrusted",
            ["provider", "reason"],
            registry=r,
        )
        self.receipt_seconds = Histogram(
            "ihub_receipt_latency_seconds",
            "From the provider accepting a message to its first delivered receipt",
            ["provider"],
            buckets=RECEIPT_BUCKETS,
            registry=r,
        )
        self.webhook_deliveries_total = Counter(
            "ihub_webhook_deliveries",
            "Webhook attempts to tenants' endpoints, by tenant and outcome",
            ["tenant", "outcome"],
            registry=r,
        )
        self.webhook_seconds = Histogram(
            "ihub_webhook_delivery_seconds",
            "One webhook attempt, connecting to the end of the response head",
            buckets=WEBHOOK_BUCKETS,
            registry=r,
        )
        self.webhook_disablings_total = Counter(
            "ihub_webhook_endpoint_disablings",
            "Webhook endpoints the hub disabled: gone (410) or failing",
            ["reason"],
            registry=r,
        )
        for reason in WEBHOOK_DISABLE_REASONS:
            self.webhook_disablings_total.labels(reason)
        self.in_flight = Gauge(
            "ihub_attempts_in_flight",
            "Messages a worker is handling right now (claim, provider call, finish)",
            registry=r,
            multiprocess_mode="livesum",
        )

    # -- the Metrics port ---------------------------------------------------------

    def accepted(self, n: Notification) -> None:
        """A new notification was persisted and queued."""
        self.accepted_total.labels(
            self._tenant(n.tenant),
            self._country(n.country),
            str(n.channel),
            self._provider(n.provider),
        ).inc()

    def attempted(
        self, n: Notification, provider: str, result: DeliveryResult, seconds: float
    ) -> None:
        """One provider call ended."""
        name = self._provider(provider)
        outcome = str(result.outcome)
        error = "none" if isinstance(result, Delivered) else self._error_class(result.error_class)
        self.attempts_total.labels(
            self._tenant(n.tenant), str(n.channel), name, outcome, error
        ).inc()
        self.provider_seconds.labels(str(n.channel), name, outcome).observe(max(0.0, seconds))

    def finished(self, n: Notification, provider: str, status: Status, at: float) -> None:
        """The notification reached DONE or FAILED."""
        outcome = "done" if status is Status.DONE else "failed"
        self.finished_total.labels(
            self._tenant(n.tenant),
            self._country(n.country),
            str(n.channel),
            self._provider(provider),
            outcome,
        ).inc()
        elapsed = max(0.0, at - n.created_at.timestamp())
        self.delivery_seconds.labels(str(n.channel), outcome).observe(elapsed)

    def invariant_breach(self, kind: str) -> None:
        """An InvariantBreach of ``kind`` was caught (and logged) by the dispatcher."""
        self.invariant_breaches_total.labels(self._kind(kind)).inc()

    def receipt(self, provider: str, state: str) -> None:
        """A receipt recorded as a new event."""
        label = state if state in RECEIPT_STATES else "other"
        self.receipts_total.labels(self._provider(provider), label).inc()

    def receipt_unmatched(self, provider: str) -> None:
        """A receipt for no known notification of its tenant."""
        self.receipts_unmatched_total.labels(self._provider(provider)).inc()

    def receipt_duplicate(self, provider: str) -> None:
        """A receipt repeating a recorded event."""
        self.receipts_duplicate_total.labels(self._provider(provider)).inc()

    def receipt_rejected(self, provider: str, reason: str) -> None:
        """A refused receipt request; the reason is one of four (else ``other``)."""
        label = reason if reason in REJECT_REASONS else "other"
        self.receipts_rejected_total.labels(self._provider(provider), label).inc()

    def receipt_latency(self, provider: str, seconds: float) -> None:
        """Sent to first delivered."""
        self.receipt_seconds.labels(self._provider(provider)).observe(max(0.0, seconds))

    # -- the WebhookMetrics port --------------------------------------------------

    def webhook_attempt(self, tenant: str, outcome: str, seconds: float) -> None:
        """One webhook attempt."""
        label = outcome if outcome in WEBHOOK_OUTCOMES else "other"
        self.webhook_deliveries_total.labels(self._tenant(tenant), label).inc()
        self.webhook_seconds.observe(max(0.0, seconds))

    def webhook_endpoint_disabled(self, reason: str) -> None:
        """An endpoint disabled by the delivery loop."""
        label = reason if reason in WEBHOOK_DISABLE_REASONS else "other"
        self.webhook_disablings_total.labels(label).inc()

    # -- entry-point hooks ----------------------------------------------------------

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        """One API request; ``route`` is the matched template, never the raw path."""
        verb = method if method in HTTP_METHODS else "other"
        self.http_seconds.labels(verb, route, str(status)).observe(max(0.0, seconds))
