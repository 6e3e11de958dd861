"""Retry policy: capped exponential backoff with full jitter and an attempt budget."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


def budget_exhausted(attempts_used: int, max_attempts: int) -> bool:
    """Whether no attempt is left after ``attempts_used`` of ``max_attempts``."""
    return attempts_used >= max_attempts


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently a transient failure is retried."""

    max_attempts: int = 5
    base_seconds: float = 1.0
    cap_seconds: float = 300.0
    # A provider's Retry-After is an instruction, honoured above our own cap;
    # this only guards against an absurd one (days) parking a message.
    retry_after_limit_seconds: float = 3600.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        # Written so that NaN, for which every comparison is false, fails too.
        if not (0 < self.base_seconds <= self.cap_seconds < math.inf):
            raise ValueError("need 0 < base_seconds <= cap_seconds, both finite")

    def ceiling(self, attempt: int) -> float:
        """Upper bound of the delay after failed attempt number ``attempt`` (1-based)."""
        # min() before the power would overflow for large attempt numbers.
        exponent = min(attempt - 1, 62)
        return float(min(self.cap_seconds, self.base_seconds * (2**exponent)))

    def delay(
        self,
        attempt: int,
        *,
        retry_after: float | None = None,
        rng: random.Random | None = None,
    ) -> float:
        """Full-jitter delay before the next attempt; never shorter than Retry-After.

        Retry-After is honoured even above ``cap_seconds`` (the provider asked
        for it), up to ``retry_after_limit_seconds``.
        """
        jittered = (rng or random).uniform(0.0, self.ceiling(attempt))
        if retry_after is not None:
            return max(jittered, min(retry_after, self.retry_after_limit_seconds))
        return jittered

    def exhausted(self, attempts_used: int) -> bool:
        """Whether no attempt is left after ``attempts_used`` attempts."""
        return budget_exhausted(attempts_used, self.max_attempts)
