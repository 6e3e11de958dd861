"""The dispatcher's values: its settings, a claimed message, and what it did."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from integration_hub.domain.models import Notification
from integration_hub.domain.retry import RetryPolicy
from integration_hub.domain.status import Status
from integration_hub.domain.tenants import Tenant
from integration_hub.domain.verdict import Verdict
from integration_hub.ports import QueueMessage


class Result(StrEnum):
    """What the dispatcher did with one message."""

    DONE = "done"
    RETRY = "retry"
    FAILED = "failed"
    DUPLICATE = "duplicate"  # already finished: a redelivery
    HELD = "held"  # another worker holds a live claim
    LOST = "lost"  # our claim was taken over while we worked
    MISSING = "missing"  # no such notification
    BROKEN = "broken"  # an invariant breach (a bug): left to come back, see Dispatcher.process

    @classmethod
    def of(cls, verdict: Verdict) -> Result:
        """The result of recording ``verdict``."""
        return _OF_STATUS[verdict.status]


_OF_STATUS = {
    Status.DONE: Result.DONE,
    Status.FAILED: Result.FAILED,
    Status.PROCESSING: Result.RETRY,
}

# Results logged at DEBUG; the rest (retry, failed, held, lost, broken) at INFO.
QUIET = frozenset({Result.DONE, Result.DUPLICATE, Result.MISSING})


@dataclass(frozen=True, slots=True)
class DispatchSettings:
    """Timings of one attempt."""

    lease_seconds: float = 60.0
    provider_timeout_seconds: float = 20.0


@dataclass(frozen=True, slots=True)
class Claim:
    """A received message after its claim: what ``process`` continues from."""

    message: QueueMessage
    tenant: Tenant | None
    policy: RetryPolicy
    notification: Notification | None
    """As the claim left it (``claimed_by`` is the receipt when it is ours); None if missing."""
    lease_ends: float = 0.0
    """``time.monotonic()`` by which the claim's lease has surely run out."""
