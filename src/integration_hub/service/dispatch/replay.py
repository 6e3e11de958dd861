"""Recording the outcomes that stopped workers left in the outcome journal (ADR 0017)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from integration_hub.domain.errors import Unavailable
from integration_hub.ports import (
    ClaimStore,
    Completion,
    OutcomeJournal,
    PendingOutcome,
    Queue,
    Settle,
)

# The name operators' log filters know the dispatcher by (it was one module).
log = logging.getLogger("integration_hub.service.dispatch")


async def replay_journal(
    store: ClaimStore, queue: Queue, journal: OutcomeJournal, stop: asyncio.Event
) -> int:
    """Record the outcomes stopped workers left journaled; call before any claim.

    An outage is waited out (nothing can be claimed without the store
    either) until ``stop``; what is left then stays journaled for the
    next start. Returns how many outcomes were settled.
    """
    settled = 0
    for seq, outcome in journal.pending():
        if not await _replay(store, queue, outcome, stop):
            break
        journal.forget(seq)
        settled += 1
    if settled:
        log.info("outcome journal: recorded %d outcomes of stopped workers", settled)
    return settled


async def _replay(
    store: ClaimStore, queue: Queue, outcome: PendingOutcome, stop: asyncio.Event
) -> bool:
    """Record one journaled outcome; False if stopped before it could be."""
    message = outcome.message
    delay = 0.1
    while True:
        try:
            done = await store.complete_attempt(
                message.notification_id,
                message.receipt,
                outcome.attempt,
                status=outcome.status,
                dead_letter_reason=outcome.dead_letter_reason,
                settle=Settle(message, outcome.release_delay),
            )
            break
        except Unavailable:
            if stop.is_set():
                return False
            log.warning("replaying the outcome of %s: store unavailable", message.notification_id)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 2.0)
        except Exception:
            # Not an outage: it would fail at every start. The notification's
            # claim runs out and it is claimed (and sent) again.
            log.exception("replaying the outcome of %s failed", message.notification_id)
            return True
    if done is Completion.RECORDED:
        # DynamoDB + SQS: the queue is settled apart. An expired receipt
        # leaves the message to come back and be acked as a duplicate.
        with contextlib.suppress(Exception):
            if outcome.release_delay is None:
                await queue.ack(message)
            else:
                await queue.release(message, delay=outcome.release_delay)
    log.info(
        "replayed the journaled outcome of %s: %s",
        message.notification_id,
        "already settled or taken over" if done is Completion.LOST else "recorded",
    )
    return True
