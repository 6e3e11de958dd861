"""The notification lifecycle's decisions, as pure functions over plain values.

Every backend (SQLite, PostgreSQL, DynamoDB) reads what it needs, asks one of
these functions what to do, and persists the answer: none of them decides
anything itself. Where a backend must state a rule in its own language to
make it atomic (a DynamoDB condition expression), a property test checks the
two against each other (tests/contract/test_lifecycle_conditions.py).

Adding a store operation starts here: write the decision as a function of the
row as read and the clock, test it in tests/unit/test_lifecycle.py, then
persist its answer in each backend (docs/architecture.md, "Adding a store
operation").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from integration_hub.domain.models import Attempt
from integration_hub.domain.retry import RetryPolicy, budget_exhausted
from integration_hub.domain.status import TERMINAL, Status, check_transition
from integration_hub.domain.tenants import Tenant


def _optional(row: Mapping[str, Any], name: str) -> Any:
    # A DynamoDB item leaves out what is unset; a SQL row has it as NULL.
    try:
        return row[name]
    except (KeyError, IndexError):
        return None


# -- claims -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClaimState:
    """The part of a notification a claim decision reads."""

    status: Status
    claim_token: str | None
    claim_expires_at: float | None
    attempts_used: int
    attempt_count: int

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> ClaimState:
        """From a stored row or item (SQL row, DynamoDB item as plain values)."""
        return cls(
            status=Status(row["status"]),
            claim_token=_optional(row, "claim_token"),
            claim_expires_at=_optional(row, "claim_expires_at"),
            attempts_used=int(row["attempts_used"]),
            attempt_count=int(row["attempt_count"]),
        )


def claim_held(state: ClaimState, now: float) -> bool:
    """Whether some worker holds a live (unexpired) claim."""
    return state.claim_token is not None and (state.claim_expires_at or 0.0) > now


@dataclass(frozen=True, slots=True)
class Unchanged:
    """Leave the notification as it is: finished, or claimed by a live worker."""


@dataclass(frozen=True, slots=True)
class Take:
    """Claim it for one attempt: PROCESSING under ``token`` until ``expires_at``."""

    token: str
    expires_at: float
    number: int
    """The new attempt's number (``attempt_count`` after the claim)."""
    attempts_used: int
    """The budget spent after the claim."""
    now: float


@dataclass(frozen=True, slots=True)
class Fail:
    """End it FAILED, with a dead letter carrying ``reason``.

    ``provider`` is the provider that was called last (None: keep the stored one).
    """

    reason: str
    now: float
    provider: str | None = None


ClaimDecision = Unchanged | Take | Fail


def exhausted_reason(max_attempts: int) -> str:
    """Why a notification whose budget crashes spent ends FAILED."""
    return (
        f"attempt budget of {max_attempts} exhausted without a recorded outcome"
        " (the worker stopped during the provider call)"
    )


def decide_claim(
    state: ClaimState, *, token: str, now: float, lease_seconds: float, max_attempts: int
) -> ClaimDecision:
    """What a claim of a notification read as ``state`` does.

    A finished notification, or one a live worker holds, is left alone. An
    unclaimed one (RECEIVED, or PROCESSING with a lapsed lease) is taken for
    one more attempt, unless earlier attempts that died mid-call (crashes)
    spent the budget: then it ends FAILED instead of being sent again.
    """
    if state.status in TERMINAL or (state.status is Status.PROCESSING and claim_held(state, now)):
        return Unchanged()
    check_transition(state.status, Status.PROCESSING)
    if budget_exhausted(state.attempts_used, max_attempts):
        return Fail(exhausted_reason(max_attempts), now)
    return Take(
        token=token,
        expires_at=now + lease_seconds,
        number=state.attempt_count + 1,
        attempts_used=state.attempts_used + 1,
        now=now,
    )


class PoisonDecision(Enum):
    """What dead-lettering a message the worker cannot process does."""

    FINISHED = "finished"
    """Nothing to do: no such notification, or it is DONE or FAILED already."""
    HELD = "held"
    """Another worker holds a live claim: change nothing, try later."""
    FAIL = "fail"
    """End it FAILED with the dead letter."""

    @property
    def settled(self) -> bool:
        """What ``Store.dead_letter`` answers: whether the notification is finished now."""
        return self is not PoisonDecision.HELD


def decide_dead_letter(state: ClaimState | None, now: float) -> PoisonDecision:
    """For a poison message: the notification as read, or None if there is none."""
    if state is None or state.status in TERMINAL:
        return PoisonDecision.FINISHED
    if claim_held(state, now):
        return PoisonDecision.HELD
    return PoisonDecision.FAIL


# -- completing an attempt ------------------------------------------------------


def may_complete(status: Status, claim_token: str | None, token: str) -> bool:
    """Only the holder of the claim records an outcome (even past its lease:
    nobody else has claimed it since, or the token would differ)."""
    return status is Status.PROCESSING and claim_token == token


@dataclass(frozen=True, slots=True)
class Finish:
    """The notification's fields after an attempt's outcome is recorded.

    The claim is always cleared. ``dead_letter`` is the reason to write a
    dead letter with (FAILED only).
    """

    status: Status
    provider: str
    last_error: str | None
    finished_at: float | None
    now: float
    dead_letter: str | None = None


def decide_completion(
    attempt: Attempt, *, status: Status, dead_letter_reason: str | None, now: float
) -> Finish:
    """Record ``attempt`` and move PROCESSING -> ``status`` (PROCESSING is a retry).

    FAILED always writes a dead letter: the reason given, else the attempt's
    message. A retry or DONE keeps the attempt's message as ``last_error``
    only when the attempt failed.
    """
    check_transition(Status.PROCESSING, status)
    if status is Status.FAILED:
        reason = dead_letter_reason or attempt.message or "failed"
        return Finish(status, attempt.provider, reason, now, now, dead_letter=reason)
    return Finish(
        status=status,
        provider=attempt.provider,
        last_error=attempt.message if attempt.error_class else None,
        finished_at=now if status is Status.DONE else None,
        now=now,
    )


# -- dead letters and redrive ---------------------------------------------------------


def visible_to(tenant: str | None, owner: str) -> bool:
    """Whether a caller scoped to ``tenant`` (None: an operator) may see ``owner``'s data."""
    return tenant is None or tenant == owner


def check_redrive(status: Status) -> None:
    """A redrive moves FAILED -> RECEIVED with a fresh budget (InvalidTransition otherwise)."""
    check_transition(status, Status.RECEIVED)


# -- idempotency keys ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyState:
    """The part of a stored Idempotency-Key record the takeover rule reads."""

    expires_at: float
    locked_until: float
    completed: bool
    """Whether the request that took the key stored its response."""

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> KeyState:
        """From a stored row or item."""
        return cls(
            expires_at=float(row["expires_at"]),
            locked_until=float(row["locked_until"]),
            completed=row["response"] is not None,
        )


def key_free(state: KeyState | None, now: float) -> bool:
    """Whether a request may take the key: nobody has it, its record expired, or
    the request that reserved it died (in progress, with a lapsed lock)."""
    if state is None:
        return True
    return state.expires_at <= now or (not state.completed and state.locked_until <= now)


# -- retry policy ----------------------------------------------------------------------


def retry_policy(default: RetryPolicy, tenant: Tenant | None) -> RetryPolicy:
    """The hub's policy with a tenant's overrides (None fields keep the default).

    A tenant's base above the default cap raises the cap with it, so that the
    policy stays valid (base <= cap).
    """
    if tenant is None:
        return default
    base = tenant.backoff_base_seconds or default.base_seconds
    return RetryPolicy(
        max_attempts=tenant.max_attempts or default.max_attempts,
        base_seconds=base,
        cap_seconds=max(base, tenant.backoff_cap_seconds or default.cap_seconds),
        retry_after_limit_seconds=default.retry_after_limit_seconds,
    )
