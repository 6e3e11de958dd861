"""Time, injected so tests can move it for leases, backoff and key expiry."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Time source, so tests can move time for leases, backoff and key expiry."""

    def now(self) -> float:
        """Seconds since the Unix epoch."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        """Seconds since the Unix epoch."""
        return time.time()
