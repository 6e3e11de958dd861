"""Flows of notifications: reads, claims, completions, dead letters and redrive.

Each reads the row, asks ``domain/lifecycle.py`` what to do, and persists the
answer; none decides anything itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from integration_hub.adapters import rows as convert
from integration_hub.adapters.sql import statements as q
from integration_hub.adapters.sql.flow import Flow, row, rows, run, value
from integration_hub.adapters.sql.webhooks import record_change
from integration_hub.domain import lifecycle, webhooks
from integration_hub.domain.delivery import OutboundMessage
from integration_hub.domain.models import Attempt, Notification
from integration_hub.domain.receipts import DeliveryState
from integration_hub.domain.status import Status
from integration_hub.ports import ClaimRequest, Completion, DeadLetter, Settle

# -- reads ---------------------------------------------------------------------------------


def get_notification(tenant: str | None, notification_id: str) -> Flow[Notification | None]:
    """A notification with its attempts; ``tenant=None`` only for operators."""
    if tenant is None:
        found = yield row(q.NOTIFICATION, id=notification_id)
    else:
        found = yield row(q.TENANT_NOTIFICATION, id=notification_id, tenant=tenant)
    if found is None:
        return None
    attempts = yield rows(q.ATTEMPTS, id=notification_id)
    return convert.notification_from_row(found, [convert.attempt_from_row(a) for a in attempts])


def list_notifications(
    tenant: str,
    status: Status | None,
    country: str | None,
    limit: int,
    before_id: str | None,
    delivery_state: DeliveryState | None = None,
) -> Flow[list[Notification]]:
    """The tenant's notifications, newest first, strictly older than ``before_id``."""
    statement = q.listing(
        status=status is not None,
        country=country is not None,
        before=before_id is not None,
        delivery=delivery_state is not None,
    )
    found = yield rows(
        statement,
        tenant=tenant,
        status=None if status is None else str(status),
        country=country,
        delivery_state=None if delivery_state is None else str(delivery_state),
        before_id=before_id,
        limit=limit,
    )
    return [convert.notification_from_row(r) for r in found]


# -- claims ------------------------------------------------------------------------------------


def _fail(
    id: str,
    tenant: str,
    fail: lifecycle.Fail,
    event: webhooks.EventType = webhooks.DEAD_LETTER_EVENT,
) -> Flow[Any]:
    """Persist a Fail: the notification FAILED, its dead letter and its event; the row after.

    ``event``: ``dead_lettered`` unless an attempt's recorded outcome ended it
    (``completion_event(FAILED)``).
    """
    failed = yield row(q.FAIL, provider=fail.provider, reason=fail.reason, now=fail.now, id=id)
    yield run(q.DEAD_LETTER, id=id, tenant=tenant, reason=fail.reason, now=fail.now)
    yield from record_change(event, failed, fail.now)
    return failed


def claim_one(request: ClaimRequest, lease_seconds: float, now: float) -> Flow[Notification | None]:
    """Take a notification for one attempt, as ``lifecycle.decide_claim`` says."""
    found = yield row(q.CLAIM_LOCK, id=request.notification_id)
    if found is None:
        return None
    decision = lifecycle.decide_claim(
        lifecycle.ClaimState.of(found),
        token=request.token,
        now=now,
        lease_seconds=lease_seconds,
        max_attempts=request.max_attempts,
    )
    if isinstance(decision, lifecycle.Unchanged):
        return convert.notification_from_row(found)
    if isinstance(decision, lifecycle.Fail):
        fresh = yield from _fail(request.notification_id, found["tenant"], decision)
        return convert.notification_from_row(fresh)
    fresh = yield row(
        q.CLAIM,
        token=decision.token,
        expires_at=decision.expires_at,
        attempts_used=decision.attempts_used,
        number=decision.number,
        now=decision.now,
        id=request.notification_id,
    )
    yield run(
        q.START_ATTEMPT,
        id=request.notification_id,
        number=decision.number,
        provider=found["provider"],
        now=decision.now,
    )
    return convert.notification_from_row(fresh)


def claim_many(
    requests: Sequence[ClaimRequest], lease_seconds: float, now: float
) -> Flow[list[Notification | None]]:
    """``claim_one`` each request in one transaction, answers in request order.

    Rows are locked in id order, so two PostgreSQL workers claiming
    overlapping batches (a redelivery) wait for each other instead of
    deadlocking.
    """
    found: dict[int, Notification | None] = {}
    for i in sorted(range(len(requests)), key=lambda i: requests[i].notification_id):
        found[i] = yield from claim_one(requests[i], lease_seconds, now)
    return [found[i] for i in range(len(requests))]


def dead_letter(notification_id: str, reason: str, now: float) -> Flow[bool]:
    """End an unprocessable notification FAILED, as ``lifecycle.decide_dead_letter`` says."""
    found = yield row(q.CLAIM_LOCK, id=notification_id)
    state = None if found is None else lifecycle.ClaimState.of(found)
    decision = lifecycle.decide_dead_letter(state, now)
    if decision is lifecycle.PoisonDecision.FAIL:
        yield from _fail(notification_id, found["tenant"], lifecycle.Fail(reason, now))
    return decision.settled


# -- completing an attempt -----------------------------------------------------------------------


def settle(message_settle: Settle, now: float) -> Flow[None]:
    """Ack or release the queue message; a stale receipt settles nothing (as ack/release)."""
    message = message_settle.message
    if message_settle.release_delay is None:
        yield run(q.ACK, id=message.notification_id, receipt=message.receipt)
    else:
        yield run(
            q.RELEASE,
            available_at=now + message_settle.release_delay,
            id=message.notification_id,
            receipt=message.receipt,
        )


def complete_attempt(
    notification_id: str,
    token: str,
    attempt: Attempt,
    finish: lifecycle.Finish,
    settle_with: Settle | None,
    outbox: OutboundMessage | None,
) -> Flow[Completion]:
    """Record an attempt's outcome as ``finish`` (``lifecycle.decide_completion``) says."""
    holder = yield row(q.HOLDER_LOCK, id=notification_id, token=token)
    if holder is None or not lifecycle.may_complete(
        Status(holder["status"]), holder["claim_token"], token
    ):
        return Completion.LOST
    now = finish.now
    yield run(
        q.FINISH_ATTEMPT,
        now=now,
        provider=attempt.provider,
        outcome=str(attempt.outcome),
        error_class=attempt.error_class,
        error_code=attempt.error_code,
        message=attempt.message,
        latency_ms=attempt.latency_ms,
        provider_message_id=attempt.provider_message_id,
        provider_response=attempt.provider_response,
        id=notification_id,
        number=attempt.number,
    )
    if finish.dead_letter is not None:
        fail = lifecycle.Fail(finish.dead_letter, now, provider=finish.provider)
        event = webhooks.completion_event(finish.status)
        yield from _fail(notification_id, holder["tenant"], fail, event)
    else:
        # DONE with the provider's message id starts the delivery state at
        # 'sent' (ports/receipts.py); without an id nothing can report on it.
        sent = finish.status is Status.DONE and attempt.provider_message_id is not None
        after = yield row(
            q.FINISH_SENT if sent else q.FINISH,
            status=str(finish.status),
            provider=finish.provider,
            last_error=finish.last_error,
            finished_at=finish.finished_at,
            now=now,
            id=notification_id,
            provider_message_id=attempt.provider_message_id,
        )
        yield from record_change(webhooks.completion_event(finish.status), after, now)
    if outbox is not None:
        yield from append_outbox(outbox, attempt.provider_message_id or "", now)
    if settle_with is None:
        return Completion.RECORDED
    yield from settle(settle_with, now)
    return Completion.SETTLED


def append_outbox(message: OutboundMessage, provider_message_id: str, now: float) -> Flow[None]:
    """Write one sandbox delivery."""
    values = convert.outbox_values(message, provider_message_id, now)
    yield run(q.APPEND, **dict(zip(convert.OUTBOX_COLUMNS, values, strict=True)))


# -- dead letters and redrive ----------------------------------------------------------------


def list_dead_letters(tenant: str | None, limit: int) -> Flow[list[DeadLetter]]:
    """Dead letters, newest first; ``tenant=None`` lists every tenant's."""
    if tenant is None:
        found = yield rows(q.DEAD_LETTERS, limit=limit)
    else:
        found = yield rows(q.TENANT_DEAD_LETTERS, tenant=tenant, limit=limit)
    return [convert.dead_letter_from_row(r) for r in found]


def count_dead_letters() -> Flow[int]:
    """How many dead letters there are, every tenant's."""
    return int((yield value(q.COUNT_DEAD_LETTERS)))


def redrive(tenant: str | None, notification_id: str, now: float) -> Flow[bool | None]:
    """FAILED -> RECEIVED with a fresh budget, removing the dead letter; None if not found."""
    found = yield row(q.REDRIVE_LOCK, id=notification_id)
    if found is None or not lifecycle.visible_to(tenant, found["tenant"]):
        return None
    lifecycle.check_redrive(Status(found["status"]))
    after = yield row(q.REDRIVE, now=now, id=notification_id)
    yield from record_change(webhooks.REDRIVE_EVENT, after, now)
    yield run(q.DELETE_DEAD_LETTER, id=notification_id)
    yield run(
        q.ENQUEUE_FRESH, id=notification_id, tenant=found["tenant"], available_at=now, now=now
    )
    return True
