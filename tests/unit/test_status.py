"""The notification state machine: which status changes are allowed."""

from __future__ import annotations

import itertools

import pytest

from integration_hub.domain.errors import HubError, InvalidTransition, InvariantBreach
from integration_hub.domain.status import TERMINAL, Status, can_transition, check_transition

RECEIVED, PROCESSING, DONE, FAILED = (
    Status.RECEIVED,
    Status.PROCESSING,
    Status.DONE,
    Status.FAILED,
)

# The spec, written out by hand rather than read from the module under test.
ALLOWED_PAIRS = [
    (RECEIVED, PROCESSING),  # claimed by a worker
    (PROCESSING, PROCESSING),  # re-claimed: retry after backoff or expired lease
    (PROCESSING, DONE),  # delivered
    (PROCESSING, FAILED),  # permanent failure or budget exhausted
    (FAILED, RECEIVED),  # redrive from the dead-letter queue
]
REFUSED_PAIRS = [pair for pair in itertools.product(Status, repeat=2) if pair not in ALLOWED_PAIRS]


def _ids(pair: tuple[Status, Status]) -> str:
    return f"{pair[0]}->{pair[1]}"


def test_there_are_exactly_four_statuses_so_the_pair_lists_cover_every_transition() -> None:
    assert set(Status) == {RECEIVED, PROCESSING, DONE, FAILED}
    assert len(ALLOWED_PAIRS) + len(REFUSED_PAIRS) == 16


@pytest.mark.parametrize("pair", ALLOWED_PAIRS, ids=_ids)
def test_every_allowed_transition_is_allowed(pair: tuple[Status, Status]) -> None:
    current, target = pair
    assert can_transition(current, target)
    check_transition(current, target)  # does not raise


@pytest.mark.parametrize("pair", REFUSED_PAIRS, ids=_ids)
def test_every_other_transition_is_refused_with_invalid_transition(
    pair: tuple[Status, Status],
) -> None:
    current, target = pair
    assert not can_transition(current, target)
    with pytest.raises(InvalidTransition) as caught:
        check_transition(current, target)
    assert str(current) in caught.value.message
    assert str(target) in caught.value.message


def test_an_invalid_transition_is_an_invariant_breach_not_a_client_error() -> None:
    with pytest.raises(InvariantBreach) as caught:
        check_transition(DONE, PROCESSING)
    assert not isinstance(caught.value, HubError)
    assert caught.value.kind == "invalid_transition"


def test_done_is_terminal() -> None:
    assert DONE in TERMINAL
    for target in Status:
        assert not can_transition(DONE, target), f"DONE -> {target} must be refused"


def test_failed_is_terminal() -> None:
    assert FAILED in TERMINAL


def test_received_and_processing_are_not_terminal() -> None:
    assert RECEIVED not in TERMINAL
    assert PROCESSING not in TERMINAL


def test_failed_to_received_is_allowed_as_a_redrive() -> None:
    check_transition(FAILED, RECEIVED)


def test_a_failed_notification_cannot_jump_straight_back_to_processing() -> None:
    with pytest.raises(InvalidTransition):
        check_transition(FAILED, PROCESSING)


def test_received_to_done_is_refused() -> None:
    with pytest.raises(InvalidTransition):
        check_transition(RECEIVED, DONE)


def test_processing_to_processing_is_allowed_as_a_reclaim() -> None:
    check_transition(PROCESSING, PROCESSING)


@pytest.mark.parametrize("status", list(Status), ids=str)
def test_a_status_is_stored_as_its_upper_case_name(status: Status) -> None:
    assert status == status.name
    assert Status(status.name) is status
