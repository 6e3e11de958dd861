"""The OpenTelemetry SDK, exporting spans over OTLP/HTTP (the ``otel`` extra).

Only ``entrypoints.observability.setup`` imports this module, and only when
the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set: otherwise the SDK is never
imported and spans are the API's no-op.
The exporter, the sampler (``OTEL_TRACES_SAMPLER``), the service name
(``OTEL_SERVICE_NAME``) and resource attributes read their usual
``OTEL_*`` variables.
"""

from __future__ import annotations

import os

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from integration_hub import __version__


def install(role: str, exporter: SpanExporter | None = None) -> TracerProvider:
    """Make an SDK tracer provider, batching to ``exporter`` (default OTLP/HTTP), the global one.

    ``role`` (api, worker, serve, lambda-api, lambda-worker) becomes the
    ``ihub.role`` resource attribute, so one service's processes can be told apart.
    """
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    resource = Resource.create(
        {
            "service.name": os.environ.get("OTEL_SERVICE_NAME") or "integration-hub",
            "service.version": __version__,
            "ihub.role": role,
        }
    )
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider
