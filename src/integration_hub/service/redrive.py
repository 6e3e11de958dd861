"""Dead letters back into the queue, without breaking idempotency."""

from __future__ import annotations

from typing import Protocol

from integration_hub import tracing
from integration_hub.ports import DeadLetterStore, Queue, ReadStore


class RedriveStore(DeadLetterStore, ReadStore, Protocol):
    """The roles a redrive uses: the dead letters, and the notification it re-queues."""


async def redrive(
    store: RedriveStore, queue: Queue, tenant: str | None, notification_id: str
) -> bool:
    """Put one dead letter back: FAILED -> RECEIVED, fresh budget. False if no such letter."""
    result = await store.redrive(tenant, notification_id)
    if result is None:
        return False
    if result is False:
        # The store could not enqueue in its own transaction: do it now, in
        # the notification's own trace (its message carries that context).
        n = await store.get_notification(tenant, notification_id)
        with tracing.resumed("ihub.redrive", n):
            await queue.enqueue(notification_id, n.tenant if n else tenant or "")
    return True


async def redrive_all(store: RedriveStore, queue: Queue, tenant: str | None) -> list[str]:
    """Redrive every dead letter (of one tenant, or of all); the ids put back."""
    done: list[str] = []
    seen: set[str] = set()
    while True:
        letters = await store.list_dead_letters(tenant, limit=500)
        fresh = [d for d in letters if d.notification_id not in seen]
        if not fresh:
            return done
        for letter in fresh:
            seen.add(letter.notification_id)
            if await redrive(store, queue, tenant, letter.notification_id):
                done.append(letter.notification_id)
