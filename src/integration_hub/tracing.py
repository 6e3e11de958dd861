"""Spans and log context of requests and attempts, on the OpenTelemetry API only.

Like ``logging``, this is cross-cutting and does no I/O: every layer may use
it. Without configuration the OpenTelemetry API hands out its no-op tracer,
so a span costs a function call; ``adapters/otel.py`` (the ``otel`` extra)
installs the SDK when an entry point is told to export (README,
"Observability").

Trace context crosses the queue as W3C ``traceparent``/``tracestate``
strings stored with the notification (and, on SQS, as message attributes),
so one trace covers a notification from the accepting request to its last
attempt (ADR 0015). Span attributes name tenants, countries, channels,
providers and outcomes, never a recipient, a body or a credential.

The dispatcher's attempt and provider-call spans are built on these in
``service/dispatch/tracing.py``, beside the only code that uses them.

The same scopes bind the log context (request id, tenant, notification id,
attempt, provider, outcome) in one context variable, which the log chain
(``entrypoints/logs.py``) adds to every line inside them, whoever logs it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from integration_hub.domain.models import Notification

TRACER = "integration_hub"
# The log context: replaced, never mutated, so a scope's exit (a reset of
# this variable) drops everything bound inside it at once.
_LOG_CONTEXT: ContextVar[dict[str, Any]] = ContextVar("ihub_log_context", default={})  # noqa: B039 - never mutated
# The stored form is W3C trace context whatever OTEL_PROPAGATORS says: it is
# what the columns and the SQS attributes are named after.
_W3C = TraceContextTextMapPropagator()


@functools.cache
def tracer() -> trace.Tracer:
    """The hub's tracer: a no-op one until an entry point installs the SDK.

    Made once: before the SDK is installed it is the API's proxy, which
    forwards to the SDK's tracer from then on.
    """
    return trace.get_tracer(TRACER)


def carrier() -> dict[str, str]:
    """The current span's ``traceparent`` (and ``tracestate``), or {} outside a trace."""
    headers: dict[str, str] = {}
    if trace.get_current_span().get_span_context().is_valid:
        _W3C.inject(headers)
    return headers


def extract(headers: Mapping[str, str | None]) -> otel_context.Context | None:
    """A parent context from ``traceparent``/``tracestate``; None if there is none valid."""
    clean = {k: v for k, v in headers.items() if v}
    if "traceparent" not in clean:
        return None
    ctx = _W3C.extract(clean)
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None


def note(**fields: Any) -> None:
    """Add fields to the current log context and, as ``ihub.*``, to the current span."""
    fields = {k: v for k, v in fields.items() if v is not None}
    bind(**fields)
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes({f"ihub.{k}": _attribute(v) for k, v in fields.items()})


def _attribute(value: Any) -> str | int | float | bool:
    return value if isinstance(value, str | int | float | bool) else str(value)


def bind(**fields: Any) -> None:
    """Add fields to the log context until the enclosing ``log_scope`` ends."""
    _LOG_CONTEXT.set({**_LOG_CONTEXT.get(), **fields})


def log_context() -> dict[str, Any]:
    """The fields every log line gets now (do not mutate)."""
    return _LOG_CONTEXT.get()


@contextmanager
def log_scope(**fields: Any) -> Iterator[None]:
    """Bind ``fields`` for the block; afterwards the log context is as it was.

    Everything bound inside (by ``note`` and ``bind`` too) is dropped at the
    end, so a request or an attempt handled in the caller's task leaves
    nothing behind.
    """
    fresh = {k: v for k, v in fields.items() if v is not None}
    token = _LOG_CONTEXT.set({**_LOG_CONTEXT.get(), **fresh})
    try:
        yield
    finally:
        _LOG_CONTEXT.reset(token)


@contextmanager
def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: otel_context.Context | None = None,
    **attributes: Any,
) -> Iterator[Span]:
    """A current span; an exception escaping it is recorded and marks it failed."""
    attrs = {f"ihub.{k}": _attribute(v) for k, v in attributes.items() if v is not None}
    with tracer().start_as_current_span(name, context=parent, kind=kind, attributes=attrs) as s:
        yield s


@contextmanager
def resumed(name: str, n: Notification | None) -> Iterator[Span]:
    """A span in the notification's own trace, linked to the caller's (redrive, reconcile).

    What it enqueues carries this span's context, so later attempts stay in
    the trace of the request that accepted the notification.
    """
    here = trace.get_current_span().get_span_context()
    links = [trace.Link(here)] if here.is_valid else None
    parent = extract({"traceparent": n.traceparent, "tracestate": n.tracestate}) if n else None
    attrs = {"ihub.notification_id": n.id, "ihub.tenant": n.tenant} if n else None
    with tracer().start_as_current_span(name, context=parent, links=links, attributes=attrs) as s:
        yield s


def current_ids() -> dict[str, str]:
    """``trace_id`` and ``span_id`` of the current span, for log lines; {} outside one."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return {}
    return {
        "trace_id": trace.format_trace_id(ctx.trace_id),
        "span_id": trace.format_span_id(ctx.span_id),
    }
