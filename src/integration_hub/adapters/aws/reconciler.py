"""No loss between DynamoDB and SQS: re-enqueue notifications nobody claimed.

``accept`` commits the notification and its idempotency record in DynamoDB;
the SQS message is sent afterwards and that send can fail (or the process can
die in between). Such a notification stays RECEIVED, in the sparse ``GSI4``
index, with nothing in the queue. ``reconcile`` sends a message for every
notification that has been RECEIVED longer than ``older_than_seconds`` and
moves its index entry to now, so the next run leaves it alone for another
period. A notification whose message was merely slow gets a second message;
the dispatcher's claim makes that harmless (ack as duplicate, or release
while held).
"""

from __future__ import annotations

import logging

from integration_hub import tracing
from integration_hub.adapters.aws.dynamodb import DynamoStore
from integration_hub.ports import Queue

log = logging.getLogger(__name__)


async def reconcile(
    store: DynamoStore, queue: Queue, *, older_than_seconds: float, limit: int = 1000
) -> int:
    """Re-enqueue notifications RECEIVED for longer than ``older_than_seconds``; how many."""
    stale = await store.list_received(
        older_than=store.clock.now() - older_than_seconds, limit=limit
    )
    sent = 0
    for n in stale:
        with tracing.resumed("ihub.reconcile", n):
            await queue.enqueue(n.id, n.tenant)
        sent += 1
        # Claimed meanwhile (False) is fine: the extra message is a harmless duplicate.
        await store.touch_received(n)
    if sent:
        log.warning("reconciler re-enqueued %d notification(s) left RECEIVED", sent)
    return sent
