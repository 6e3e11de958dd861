"""Notification statuses and the transitions the state machine allows."""

from __future__ import annotations

from enum import StrEnum

from integration_hub.domain.errors import InvalidTransition


class Status(StrEnum):
    """Lifecycle of a notification."""

    RECEIVED = "RECEIVED"
    PROCESSING = "PROCESSING"
    DONE = "DONE"
    FAILED = "FAILED"


# PROCESSING -> PROCESSING is a re-claim: a retry after backoff, or a claim
# taken over after the previous worker's lease expired. FAILED -> RECEIVED is
# a redrive from the dead-letter queue. DONE is terminal.
ALLOWED: dict[Status, frozenset[Status]] = {
    Status.RECEIVED: frozenset({Status.PROCESSING}),
    Status.PROCESSING: frozenset({Status.PROCESSING, Status.DONE, Status.FAILED}),
    Status.DONE: frozenset(),
    Status.FAILED: frozenset({Status.RECEIVED}),
}

TERMINAL = frozenset({Status.DONE, Status.FAILED})


def can_transition(current: Status, target: Status) -> bool:
    """Whether the state machine allows ``current -> target``."""
    return target in ALLOWED[current]


def check_transition(current: Status, target: Status) -> None:
    """Raise InvalidTransition unless ``current -> target`` is allowed."""
    if not can_transition(current, target):
        raise InvalidTransition(f"cannot move a notification from {current} to {target}")
