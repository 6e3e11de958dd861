"""Process-wide logging and tracing set-up, called by the entry points only."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from integration_hub.config import ConfigurationError, Settings
from integration_hub.entrypoints import logs

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger(__name__)
# The standard OpenTelemetry variables (the exporter reads them itself).
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


@dataclass
class Observability:
    """What ``setup`` installed; flush before a Lambda freezes, shut down at exit."""

    provider: TracerProvider | None = None

    def flush(self, timeout_millis: int = 5000) -> None:
        """Export the spans still batched (a frozen Lambda exports nothing)."""
        if self.provider is not None:
            self.provider.force_flush(timeout_millis)

    def shutdown(self) -> None:
        """Flush and stop the exporter."""
        if self.provider is not None:
            self.provider.shutdown()
            self.provider = None


def tracing_wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for OTLP export (and has not disabled the SDK)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(environ.get(name, "").strip() for name in ENDPOINT_VARIABLES)


def setup(settings: Settings, role: str) -> Observability:
    """Structured logs always; OTLP traces only when OTEL_EXPORTER_OTLP_ENDPOINT is set.

    Without it the SDK is not even imported: spans stay the API's no-op.
    """
    logs.configure(settings.log_level, settings.log_format, settings.log_recipients)
    if not tracing_wanted():
        return Observability()
    try:
        from integration_hub.adapters import otel
    except ImportError as exc:
        if not (exc.name or "").startswith("opentelemetry"):
            raise
        raise ConfigurationError(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set, which needs the OpenTelemetry SDK:"
            " pip install 'integration-hub[otel]'"
        ) from None
    provider = otel.install(role)
    log.info("exporting traces over OTLP (role %s)", role)
    return Observability(provider)
