"""A circuit breaker per (tenant, provider): closed, open, half-open (issue 17).

The classic pattern, as pure values: every function takes the time and
returns a new ``Breaker``; where the state lives (one process, the store,
DynamoDB) is the adapters' business.

- **Closed**: calls go through and are counted in a sliding window of
  one-second buckets (``Window``: aggregate counts, not one entry per call, so
  a shared copy costs one write per second and provider, not per call). Once
  the window holds at least ``min_calls`` calls of which at least
  ``failure_ratio`` failed (transient errors and timeouts), it opens.
- **Open**: calls are refused (the chain goes on with its next provider)
  until ``retry_at``, one cool-down after opening.
- **Half-open**: at ``retry_at`` up to ``probe_calls`` calls are let through.
  One failure opens it again with the cool-down doubled (up to
  ``max_cooldown_seconds``); ``probe_calls`` successes close it, with a fresh
  window and the first cool-down again.

Only a provider's own trouble counts as a failure (``CallOutcome.FAILURE``):
a refused recipient or a tenant's bad credentials say nothing of its health
and count as answered calls (``CallOutcome.ANSWERED``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import StrEnum

from integration_hub.domain.models import Outcome


class Circuit(StrEnum):
    """Where a breaker stands."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CallOutcome(StrEnum):
    """What one provider call tells the breaker."""

    SUCCESS = "success"
    """Delivered."""
    FAILURE = "failure"
    """The provider's own trouble: a transient error or a timeout."""
    ANSWERED = "answered"
    """The provider answered, but about the message or the account (permanent,
    configuration): neither healthy nor failing, counted as a call only."""


def call_outcome(outcome: Outcome) -> CallOutcome | None:
    """How an attempt's outcome counts; None for one that never finished (abandoned)."""
    if outcome is Outcome.DELIVERED:
        return CallOutcome.SUCCESS
    if outcome is Outcome.TRANSIENT:
        return CallOutcome.FAILURE
    if outcome in (Outcome.PERMANENT, Outcome.CONFIGURATION):
        return CallOutcome.ANSWERED
    return None


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When a breaker opens, how long it stays open, how it tries again."""

    window_seconds: float = 60.0
    min_calls: int = 20
    failure_ratio: float = 0.5
    cooldown_seconds: float = 30.0
    max_cooldown_seconds: float = 600.0
    probe_calls: int = 3
    probe_timeout_seconds: float = 30.0
    """A half-open round whose probes have not all reported after this long (a worker
    died in one) lets new probes go: a breaker is never stuck half-open."""

    def __post_init__(self) -> None:
        if self.window_seconds < 1 or self.min_calls < 1 or self.probe_calls < 1:
            raise ValueError("window_seconds, min_calls and probe_calls must be at least 1")
        if not 0 < self.failure_ratio <= 1:
            raise ValueError("failure_ratio must be in (0, 1]")
        if not 0 < self.cooldown_seconds <= self.max_cooldown_seconds:
            raise ValueError("cooldown_seconds must be positive and at most max_cooldown_seconds")


@dataclass(frozen=True, slots=True)
class Bucket:
    """The calls of one second (``second`` = whole Unix seconds)."""

    second: int
    calls: int = 0
    failures: int = 0


@dataclass(frozen=True, slots=True)
class Window:
    """A sliding window of one-second buckets, oldest first."""

    buckets: tuple[Bucket, ...] = ()

    def add(self, now: float, failed: bool, window_seconds: float) -> Window:
        """This window with one more call at ``now``, buckets past the window dropped."""
        second = math.floor(now)
        kept = [b for b in self.buckets if b.second > second - window_seconds]
        if kept and kept[-1].second == second:
            last = kept[-1]
            kept[-1] = Bucket(second, last.calls + 1, last.failures + int(failed))
        else:
            kept.append(Bucket(second, 1, int(failed)))
        return Window(tuple(kept))

    def totals(self, now: float, window_seconds: float) -> tuple[int, int]:
        """Calls and failures within ``window_seconds`` of ``now``."""
        since = math.floor(now) - window_seconds
        inside = [b for b in self.buckets if b.second > since]
        return sum(b.calls for b in inside), sum(b.failures for b in inside)

    @staticmethod
    def merge(*windows: Window) -> Window:
        """The sum of several processes' windows, bucket by bucket (a shared view)."""
        by_second: dict[int, tuple[int, int]] = {}
        for window in windows:
            for b in window.buckets:
                calls, failures = by_second.get(b.second, (0, 0))
                by_second[b.second] = (calls + b.calls, failures + b.failures)
        return Window(tuple(Bucket(s, c, f) for s, (c, f) in sorted(by_second.items())))


@dataclass(frozen=True, slots=True)
class Breaker:
    """One (tenant, provider)'s breaker, as of ``changed_at``."""

    circuit: Circuit = Circuit.CLOSED
    window: Window = field(default_factory=Window)
    changed_at: float | None = None
    """When it last changed circuit (None: never)."""
    retry_at: float | None = None
    """Open: when it turns half-open."""
    cooldown_seconds: float | None = None
    """Open or half-open: the cool-down it opened with (doubled at each re-opening)."""
    probes_started: int = 0
    probes_succeeded: int = 0

    def circuit_at(self, now: float) -> Circuit:
        """The circuit as it stands at ``now``: an open one is half-open once due."""
        if self.circuit is Circuit.OPEN and self.retry_at is not None and now >= self.retry_at:
            return Circuit.HALF_OPEN
        return self.circuit

    def admit(self, now: float, policy: BreakerPolicy) -> tuple[bool, Breaker]:
        """Whether a call may go now, and the breaker after letting it (a probe counts)."""
        circuit = self.circuit_at(now)
        if circuit is Circuit.CLOSED:
            return True, self
        if circuit is Circuit.OPEN:
            return False, self
        half = self if self.circuit is Circuit.HALF_OPEN else self._half_open(now)
        if half.probes_started >= policy.probe_calls:
            since = half.changed_at if half.changed_at is not None else now
            if now - since < policy.probe_timeout_seconds:
                return False, half
            half = replace(half, probes_started=half.probes_succeeded, changed_at=now)
        return True, replace(half, probes_started=half.probes_started + 1)

    def record(self, now: float, outcome: CallOutcome, policy: BreakerPolicy) -> Breaker:
        """The breaker after a call that ended with ``outcome`` at ``now``."""
        circuit = self.circuit_at(now)
        if circuit is Circuit.OPEN:
            return self  # a call started before it opened: it decided already
        failed = outcome is CallOutcome.FAILURE
        if circuit is Circuit.HALF_OPEN:
            half = self if self.circuit is Circuit.HALF_OPEN else self._half_open(now)
            if failed:
                previous = half.cooldown_seconds or policy.cooldown_seconds
                return half._open(now, min(2 * previous, policy.max_cooldown_seconds))
            if outcome is CallOutcome.SUCCESS:
                succeeded = half.probes_succeeded + 1
                if succeeded >= policy.probe_calls:
                    return Breaker(Circuit.CLOSED, Window(), changed_at=now)
                return replace(half, probes_succeeded=succeeded)
            return half
        window = self.window.add(now, failed, policy.window_seconds)
        calls, failures = window.totals(now, policy.window_seconds)
        if calls >= policy.min_calls and failures >= policy.failure_ratio * calls:
            return replace(self, window=window)._open(now, policy.cooldown_seconds)
        return replace(self, window=window)

    def failure_rate(self, now: float, policy: BreakerPolicy) -> float | None:
        """The window's share of failed calls (None: no calls in it)."""
        calls, failures = self.window.totals(now, policy.window_seconds)
        return None if calls == 0 else failures / calls

    def _open(self, now: float, cooldown: float) -> Breaker:
        return Breaker(
            Circuit.OPEN,
            self.window,
            changed_at=now,
            retry_at=now + cooldown,
            cooldown_seconds=cooldown,
        )

    def _half_open(self, now: float) -> Breaker:
        return replace(
            self,
            circuit=Circuit.HALF_OPEN,
            changed_at=self.retry_at if self.retry_at is not None else now,
            probes_started=0,
            probes_succeeded=0,
        )
