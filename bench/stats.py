"""Small statistics over repeated measurements."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from typing import Any


def clean(values: Iterable[float | None]) -> list[float]:
    """The finite numbers among ``values``."""
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def summary(values: Iterable[float | None]) -> dict[str, Any]:
    """Median, min, max and count of the finite values (None when there are none)."""
    vs = clean(values)
    if not vs:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(vs), "min": min(vs), "max": max(vs), "n": len(vs)}


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of unsorted values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[rank]


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing or b is zero."""
    if a is None or b is None or b == 0:
        return None
    return a / b
