"""Prometheus metrics: the ``Metrics`` port's adapter, scrape-time gauges, the exposition.

The metric names are a public interface (dashboards and alert rules use
them): docs/adr/0014-metric-names-and-cardinality.md lists them and why.
"""

from integration_hub.adapters.metrics.export import MetricsExporter
from integration_hub.adapters.metrics.hub import HubMetrics
from integration_hub.adapters.metrics.labels import TenantLabelPolicy

__all__ = ["HubMetrics", "MetricsExporter", "TenantLabelPolicy"]
