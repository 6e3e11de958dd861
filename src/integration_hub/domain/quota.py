"""Per-tenant rate limit and daily quota as fixed windows.

A window is (start, count). The per-second window lets at most
``per_second`` notifications in each wall-clock second (so up to twice that
across a boundary); the daily one counts per UTC day. A refused request
counts nowhere. Storage adapters keep the windows and call ``decide`` inside
one transaction, so every API process shares the same counters.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

DAY = 86400.0


@dataclass(frozen=True, slots=True)
class Window:
    """Notifications counted since ``start``."""

    start: float
    count: int


WINDOWS = {"second": 1.0, "day": DAY}


def decide(
    now: float,
    limits: Mapping[str, int | None],
    usage: Mapping[str, Window],
) -> tuple[float | None, dict[str, Window]]:
    """(None, windows to store) if allowed; (seconds to wait, {}) if refused."""
    updated: dict[str, Window] = {}
    wait: float | None = None
    for name, limit in limits.items():
        if limit is None:
            continue
        size = WINDOWS[name]
        start = math.floor(now / size) * size
        current = usage.get(name)
        count = current.count if current is not None and current.start == start else 0
        if count + 1 > limit:
            reset = start + size - now
            wait = reset if wait is None else max(wait, reset)
            continue
        updated[name] = Window(start, count + 1)
    if wait is not None:
        return max(wait, 0.001), {}
    return None, updated
