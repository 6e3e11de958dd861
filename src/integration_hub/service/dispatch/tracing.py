"""The attempt span and the provider-call span: the dispatcher's own part of tracing.

Built on ``integration_hub.tracing`` (the tracer, trace-context extraction,
the log context), which every layer uses; what is here only the dispatcher
needs. Span attributes name tenants, countries, channels, providers and
outcomes, never a recipient, a body or a credential (ADR 0015).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from integration_hub import tracing
from integration_hub.domain.delivery import DeliveryResult
from integration_hub.domain.models import Notification
from integration_hub.ports import QueueMessage


class AttemptTrace:
    """The span and log context of one handled queue message.

    The span needs the claimed notification (SQL queues carry nothing but
    its id), so it starts once the claim has read it, dated back to when the
    scope began, as a child of the trace context the message carried or,
    failing that, the one stored with the notification.
    """

    def __init__(self, message: QueueMessage) -> None:
        self.message = message
        self.started_ns = time.time_ns()
        self.span: Span | None = None
        self._result: str | None = None
        self._token: object | None = None

    def claimed(self, n: Notification) -> None:
        """Start the attempt span under the notification's trace; bind the log context."""
        parent = tracing.extract(
            {"traceparent": self.message.traceparent, "tracestate": self.message.tracestate}
        ) or tracing.extract({"traceparent": n.traceparent, "tracestate": n.tracestate})
        attributes: dict[str, AttributeValue] = {
            "ihub.notification_id": n.id,
            "ihub.tenant": n.tenant,
            "ihub.country": n.country,
            "ihub.channel": str(n.channel),
            "ihub.attempt": n.attempt_count,
            "messaging.message.delivery_count": self.message.receive_count,
        }
        self.span = tracing.tracer().start_span(
            "ihub.attempt",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            start_time=self.started_ns,
        )
        self._token = otel_context.attach(trace.set_span_in_context(self.span))
        tracing.bind(country=n.country, channel=str(n.channel), attempt=n.attempt_count)

    def outcome(self, result: str, error: BaseException | None = None) -> None:
        """What the dispatcher did (``ihub.result``); ``error`` marks the span failed."""
        self._result = result
        if error is not None and self.span is not None:
            self.span.record_exception(error)
            self.span.set_status(Status(StatusCode.ERROR, type(error).__name__))

    def finish(self, error: BaseException | None = None) -> None:
        """End the span with the dispatcher's result (or the error that escaped)."""
        if self._token is not None:
            otel_context.detach(self._token)  # type: ignore[arg-type]
            self._token = None
        if self.span is None:
            return
        if self._result is not None:
            self.span.set_attribute("ihub.result", self._result)
        if error is not None:
            self.span.record_exception(error)
            self.span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        self.span.end()


@contextmanager
def attempt(message: QueueMessage, n: Notification | None) -> Iterator[AttemptTrace]:
    """Scope one claimed queue message: log context, and its span if ``n`` was found."""
    scope = AttemptTrace(message)
    with tracing.log_scope(notification_id=message.notification_id, tenant=message.tenant or None):
        try:
            if n is not None:
                scope.claimed(n)
            yield scope
        except BaseException as exc:
            scope.finish(exc)
            raise
        scope.finish()


@contextmanager
def provider_call(n: Notification, provider: str) -> Iterator[ProviderCall]:
    """A CLIENT span around one provider call, child of the attempt span."""
    with tracing.tracer().start_as_current_span(
        f"ihub.provider {provider}",
        kind=SpanKind.CLIENT,
        attributes={
            "ihub.provider": provider,
            "ihub.channel": str(n.channel),
            "ihub.country": n.country,
            "ihub.tenant": n.tenant,
            "ihub.attempt": n.attempt_count,
        },
    ) as s:
        tracing.bind(provider=provider)
        yield ProviderCall(s)


class ProviderCall:
    """Records a provider call's outcome on its span and in the log context."""

    def __init__(self, span: Span) -> None:
        self.span = span

    def outcome(self, result: DeliveryResult) -> None:
        """The classified result: outcome and error class, never the provider's message."""
        outcome = str(result.outcome)
        tracing.bind(outcome=outcome)
        self.span.set_attribute("ihub.outcome", outcome)
        error_class = getattr(result, "error_class", None)
        if error_class:
            self.span.set_attribute("error.type", error_class)
            self.span.set_status(Status(StatusCode.ERROR, error_class))
