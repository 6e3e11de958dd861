"""What one attempt's outcome does to its notification: one verdict, decided here.

The dispatcher calls a provider, asks ``judge`` what the classified answer
means under the tenant's retry policy, and records the verdict it gets; it
decides nothing itself. The other ways an attempt can end (the tenant is not
active, a poison message) have their own constructors, so that every reason
a notification ends FAILED is written in this module.

Pure: no clock, no I/O; the jitter comes from the ``rng`` given (tests pass a
seeded ``random.Random``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from integration_hub.domain.delivery import (
    Delivered,
    DeliveryResult,
    PermanentFailure,
)
from integration_hub.domain.errors import DataRejected, Unavailable
from integration_hub.domain.retry import RetryPolicy
from integration_hub.domain.status import TERMINAL, Status


@dataclass(frozen=True, slots=True)
class Verdict:
    """The notification's next state after an attempt, and how its message is settled.

    ``status`` is DONE, FAILED, or PROCESSING for a retry (the claim is
    cleared and the message comes back after ``release_delay`` seconds).
    ``reason`` is the dead letter's reason: FAILED always has one, the others
    never. ``result`` is the provider's classified answer the verdict was
    judged from (None when no provider was called).
    """

    status: Status
    result: DeliveryResult | None = None
    reason: str | None = None
    release_delay: float | None = None

    def __post_init__(self) -> None:
        if self.status is Status.RECEIVED:
            raise ValueError("an attempt never ends RECEIVED")
        if (self.status is Status.FAILED) != (self.reason is not None):
            raise ValueError("a FAILED verdict, and only one, carries a reason")
        if (self.status is Status.PROCESSING) != (self.release_delay is not None):
            raise ValueError("a retry, and only a retry, carries a release delay")

    @property
    def terminal(self) -> bool:
        """Whether the notification is finished (DONE or FAILED)."""
        return self.status in TERMINAL

    @property
    def dead_letter(self) -> bool:
        """Whether recording the verdict writes a dead letter (FAILED only)."""
        return self.status is Status.FAILED


def judge(
    result: DeliveryResult,
    policy: RetryPolicy,
    attempts_used: int,
    rng: random.Random | None = None,
) -> Verdict:
    """The verdict on a provider's classified answer, ``attempts_used`` attempts spent.

    Delivered is DONE; a permanent failure is FAILED at once; a transient one
    is retried after a full-jitter backoff (never sooner than Retry-After),
    unless the budget is spent: then it is FAILED, naming the last error.
    """
    if isinstance(result, Delivered):
        return Verdict(Status.DONE, result)
    if isinstance(result, PermanentFailure):
        reason = f"{result.outcome}: {result.error_class}: {result.message}"
        return Verdict(Status.FAILED, result, reason)
    if policy.exhausted(attempts_used):
        reason = (
            f"attempt budget of {policy.max_attempts} exhausted;"
            f" last error {result.error_class}: {result.message}"
        )
        return Verdict(Status.FAILED, result, reason)
    delay = policy.delay(attempts_used, retry_after=result.retry_after, rng=rng)
    return Verdict(Status.PROCESSING, result, release_delay=delay)


def tenant_not_active(tenant: str, state: str) -> Verdict:
    """FAILED without a call: the tenant is ``state`` ("disabled", "unknown")."""
    result = PermanentFailure(
        error_class=f"tenant_{state}",
        message=f"tenant {tenant!r} is {state}: nothing was sent",
        configuration=True,
    )
    return Verdict(Status.FAILED, result, f"configuration: tenant {tenant!r} is {state}")


def data_rejected(message: str) -> PermanentFailure:
    """The classified answer when the store refused the notification's own data.

    Permanent: the same data fails every time (a NUL byte on PostgreSQL).
    """
    return PermanentFailure(error_class="data_rejected", message=message)


def poison(error: Exception, deliveries: int, policy: RetryPolicy) -> Verdict | None:
    """For a message whose handling raised ``error`` on its ``deliveries``-th delivery.

    None while it may still succeed (an outage is waited out; anything else
    gets the attempt budget in deliveries); otherwise FAILED. A store that
    refused the data refuses it on every delivery: FAILED at once. The
    error's text may quote the request (recipients): only its type is kept
    (a DataRejected message names the error class, never the value).
    """
    if isinstance(error, Unavailable):
        return None
    if isinstance(error, DataRejected):
        return Verdict(Status.FAILED, reason=f"data rejected: {error.message}")
    if deliveries < policy.max_attempts:
        return None
    reason = (
        f"poison message: handling raised {type(error).__name__} on each of {deliveries} deliveries"
    )
    return Verdict(Status.FAILED, reason=reason)


def suppressed(channel: str, reason: str) -> PermanentFailure:
    """The classified answer for a notification whose recipient became suppressed
    after it was accepted: FAILED with error class ``suppressed``, no provider call."""
    return PermanentFailure(
        error_class="suppressed",
        message=f"the recipient is on this tenant's {channel} suppression list ({reason})",
    )
