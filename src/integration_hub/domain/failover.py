"""Provider chains: which provider an attempt goes to, and when the next one takes over
(issue 17).

A tenant's channel (or country route) may name an ordered chain of providers,
optionally with weights for the primary split (``70/30``). Pure rules here;
the dispatcher applies them (not wired yet):

- ``ProviderChain.order_for(key)``: the order one notification walks. The
  primary is drawn by weight from a hash of the notification id, so every
  attempt of one notification walks the same order, and the split holds over
  many; the others follow in the configured order.
- ``pick``: the first provider of that order whose breaker lets a call go;
  when every one is open, none, with the earliest time one turns half-open
  (the notification waits for it, not failed, its budget untouched).
- ``after_failure``: whether a failed attempt fails over to the next provider
  at once (a transient error, a timeout if the tenant allows it, the
  provider's own configuration refused), retries with backoff (the whole chain
  was tried in this round), or ends (a permanent error for the recipient never
  fails over: every provider would refuse it again, at a cost).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from integration_hub.domain.delivery import DeliveryResult, PermanentFailure, TransientFailure

TIMEOUT = "timeout"


@dataclass(frozen=True, slots=True)
class ProviderChain:
    """An ordered chain of providers for one channel, optionally weighted."""

    providers: tuple[str, ...]
    weights: tuple[int, ...] | None = None
    """The primary's split: provider ``i`` leads ``weights[i] / sum`` of notifications."""
    failover_on_timeout: bool = True
    """Whether a timed-out call (it may have been delivered) goes to the next provider:
    at the risk of a duplicate for the recipient, for the sake of speed."""

    def __post_init__(self) -> None:
        if not self.providers:
            raise ValueError("a chain names at least one provider")
        if len(set(self.providers)) != len(self.providers):
            raise ValueError("a chain names each provider once")
        if self.weights is not None:
            if len(self.weights) != len(self.providers):
                raise ValueError("a chain has one weight per provider")
            if any(w < 0 for w in self.weights) or sum(self.weights) == 0:
                raise ValueError("weights are non-negative and not all zero")

    def order_for(self, key: str) -> tuple[str, ...]:
        """The order the notification ``key`` walks the chain in (stable per key)."""
        if self.weights is None or len(self.providers) == 1:
            return self.providers
        digest = hashlib.sha256(key.encode()).digest()
        point = int.from_bytes(digest[:8], "big") % sum(self.weights)
        first = self.providers[-1]
        for provider, weight in zip(self.providers, self.weights, strict=True):
            if point < weight:
                first = provider
                break
            point -= weight
        return (first, *(p for p in self.providers if p != first))


@dataclass(frozen=True, slots=True)
class Pick:
    """The provider to call now, or when to look again (every breaker open)."""

    provider: str | None
    wait_until: float | None = None


def pick(
    order: Sequence[str],
    admits: Callable[[str], bool],
    half_open_at: Callable[[str], float | None],
    *,
    skip: Sequence[str] = (),
) -> Pick:
    """The first provider of ``order`` (not in ``skip``) whose breaker lets a call go;
    else the earliest time one of them turns half-open (None: none ever will)."""
    candidates = [p for p in order if p not in skip]
    for provider in candidates:
        if admits(provider):
            return Pick(provider)
    times = [t for t in (half_open_at(p) for p in candidates) if t is not None]
    return Pick(None, min(times) if times else None)


class Next(StrEnum):
    """What follows a failed attempt."""

    FAILOVER = "failover"
    """The next provider of the chain, at once (no backoff between providers)."""
    RETRY = "retry"
    """The whole chain was tried this round, or this failure stays with its provider:
    back off, then start again."""
    END = "end"
    """The recipient is refused (or no provider is left for a configuration error)."""


@dataclass(frozen=True, slots=True)
class AfterFailure:
    """What a failed attempt leads to, and why the hub would switch providers."""

    next: Next
    provider: str | None = None
    """For FAILOVER: the provider the next attempt goes to."""
    reason: str | None = None
    """For FAILOVER: the failed attempt's error class (recorded as ``failover_from``'s reason)."""


def after_failure(
    chain: ProviderChain,
    order: Sequence[str],
    failed: str,
    result: DeliveryResult,
    tried_this_round: Sequence[str],
    refused_settings: Sequence[str] = (),
) -> AfterFailure:
    """Where the attempt after ``failed``'s ``result`` goes.

    ``tried_this_round``: the providers called since the chain was last started
    from the top; ``refused_settings``: those of them that refused the tenant's
    settings (``failed`` counts in both as its result says). The next provider
    is the first one after them in ``order``; which may be called now is
    ``pick``'s question. With none left, a round that only met refused settings
    ends (no retry fixes credentials), any other backs off and starts again.
    """
    if isinstance(result, PermanentFailure) and not result.configuration:
        return AfterFailure(Next.END)
    if isinstance(result, TransientFailure):
        if result.error_class == TIMEOUT and not chain.failover_on_timeout:
            return AfterFailure(Next.RETRY)
    elif not isinstance(result, PermanentFailure):
        raise ValueError("after_failure is for failed attempts")
    tried = set(tried_this_round) | {failed}
    left = [p for p in order if p not in tried]
    if left:
        return AfterFailure(Next.FAILOVER, left[0], result.error_class)
    refused = set(refused_settings) | ({failed} if isinstance(result, PermanentFailure) else set())
    if set(order) <= refused:
        return AfterFailure(Next.END)
    return AfterFailure(Next.RETRY)
