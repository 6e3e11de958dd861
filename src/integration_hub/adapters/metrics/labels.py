"""Label-cardinality guards: every label value a metric can take comes from a bounded set.

Each distinct label combination is a time series that Prometheus keeps in
memory for hours, so a label fed by data (a tenant id, an error class a
provider made up) must not grow without bound. Ids and recipients never
become labels at all; what does is folded into ``other`` past a limit.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

OTHER = "other"

# What a label value may look like: short, printable and without anything
# that reads like an address or a secret.
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


class BoundedLabel:
    """Admits the first ``limit`` distinct values it sees; later ones become ``other``.

    First-seen rather than most-frequent on purpose: a series that changed its
    label from a tenant id to ``other`` half-way would break ``rate()``, so a
    value once admitted stays admitted for the life of the process.
    """

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self._admitted: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str | None) -> str:
        """The label value to use for ``value``."""
        if not value or not _SAFE.match(value):
            return OTHER if value else "none"
        if self.limit is None or value in self._admitted:
            return value
        with self._lock:
            if value in self._admitted:
                return value
            if len(self._admitted) >= self.limit:
                return OTHER
            self._admitted.add(value)
            return value


@dataclass(frozen=True, slots=True)
class TenantLabelPolicy:
    """``IHUB_METRICS_TENANT_LABEL``: ``on``, ``off`` or ``top:N``."""

    enabled: bool
    limit: int | None

    @classmethod
    def parse(cls, text: str) -> TenantLabelPolicy:
        """Read the setting; ValueError names what is accepted."""
        value = text.strip().lower()
        if value == "on":
            return cls(enabled=True, limit=None)
        if value == "off":
            return cls(enabled=False, limit=None)
        head, _, count = value.partition(":")
        if head == "top" and count.isdigit() and int(count) >= 1:
            return cls(enabled=True, limit=int(count))
        raise ValueError(f"expected on, off or top:N (N >= 1), got {text!r}")

    def guard(self) -> TenantLabel:
        """A guard that applies this policy to tenant ids."""
        return TenantLabel(self)


class TenantLabel:
    """The ``tenant`` label value for a tenant id, under a policy."""

    def __init__(self, policy: TenantLabelPolicy) -> None:
        self.policy = policy
        self._bounded = BoundedLabel(policy.limit)

    def __call__(self, tenant: str) -> str:
        """The label: the id, ``other`` past the top N, or ``all`` when the label is off."""
        if not self.policy.enabled:
            return "all"
        return self._bounded(tenant)


# Generous bounds for labels that are bounded by the code already (providers,
# error classes, countries, breach kinds): a guard against a bug or a fault-injection string
# turning into a series per request, not a limit anyone should reach.
PROVIDER_LIMIT = 64
ERROR_CLASS_LIMIT = 128
COUNTRY_LIMIT = 300  # ISO 3166-1 has 249 codes
BREACH_KIND_LIMIT = 32  # one per InvariantBreach class
