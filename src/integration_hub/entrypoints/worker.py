"""The worker process: receive ids in batches, dispatch them concurrently."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections import Counter

from integration_hub import tracing
from integration_hub.bootstrap import Hub, open_journal
from integration_hub.domain.errors import Unavailable
from integration_hub.service.dispatch import Claim, Result

log = logging.getLogger(__name__)


class Worker:
    """Keeps up to ``concurrency`` attempts in flight; drains them on stop."""

    def __init__(self, hub: Hub) -> None:
        s = hub.settings
        self.hub = hub
        self.concurrency = s.worker_concurrency
        self.batch_size = s.worker_batch_size
        self.poll_interval = s.poll_interval_seconds
        self.grace = s.shutdown_grace_seconds
        self.visibility = s.visibility_timeout_seconds
        self.results: Counter[Result] = Counter()
        self._in_flight: set[asyncio.Task[None]] = set()

    async def _retention(self, stop: asyncio.Event) -> None:
        # Workers own the periodic purge so that no cron is needed; several
        # workers purging at once only repeat idempotent deletes.
        interval = self.hub.settings.retention_interval_seconds
        while interval > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
            if stop.is_set():
                return
            try:
                counts = await self.hub.purge(self.hub.settings.retention_finished_seconds)
            except Exception as exc:  # the store is down: try again next time
                log.warning("retention purge failed: %s", exc)
                continue
            if any(counts.values()):
                log.info("retention purge: %s", counts)
            try:
                # Nothing stays "sent" forever: IHUB_RECEIPT_TIMEOUT_HOURS.
                expired = await self.hub.receipts.expire()
            except Exception as exc:
                log.warning("receipt expiry failed: %s", exc)
                continue
            if expired:
                log.info("receipt expiry: %d notifications expired", expired)

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set, then finish what is in flight.

        First the outcomes a killed worker left in the journal are recorded:
        a claim before that would send them again.
        """
        dispatcher = self.hub.dispatcher
        journal = open_journal(self.hub.settings)
        dispatcher.journal = journal
        try:
            await dispatcher.replay_journal(stop)
            retention = asyncio.create_task(self._retention(stop))
            try:
                await self._work(stop)
            finally:
                retention.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await retention
        finally:
            dispatcher.journal = None
            if journal is not None:
                await journal.close()

    async def _work(self, stop: asyncio.Event) -> None:
        stopping = asyncio.create_task(stop.wait())
        backoff = 0.0
        try:
            while not stop.is_set():
                free = self.concurrency - len(self._in_flight)
                if free <= 0:
                    await asyncio.wait(
                        {*self._in_flight, stopping}, return_when=asyncio.FIRST_COMPLETED
                    )
                    continue
                try:
                    messages = await self.hub.queue.receive(
                        min(self.batch_size, free), visibility_timeout=self.visibility
                    )
                    backoff = 0.0
                except Exception as exc:  # the store is down: wait, then resume
                    backoff = min(5.0, backoff * 2 or 0.1)
                    log.warning("receive failed (%s); retrying in %.1fs", exc, backoff)
                    await self._sleep_unless(stopping, backoff)
                    continue
                if not messages:
                    waiting = asyncio.create_task(
                        self.hub.queue.wait_for_messages(self.poll_interval)
                    )
                    await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
                    if not waiting.done():
                        waiting.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await waiting
                    continue
                # One claim transaction for the whole batch (SQL backends).
                for claim in await self.hub.dispatcher.claim_batch(messages):
                    task = asyncio.create_task(self._handle(claim))
                    self._in_flight.add(task)
                    task.add_done_callback(self._in_flight.discard)
                    if self.hub.metrics is not None:
                        self.hub.metrics.metrics.in_flight.inc()
                        task.add_done_callback(self._count_done)
        finally:
            stopping.cancel()
            await self._drain()

    def _count_done(self, _: asyncio.Task[None]) -> None:
        if self.hub.metrics is not None:
            self.hub.metrics.metrics.in_flight.dec()

    async def _sleep_unless(self, stopping: asyncio.Task[bool], seconds: float) -> None:
        await asyncio.wait({stopping}, timeout=seconds)

    async def _drain(self) -> None:
        if not self._in_flight:
            return
        log.info("stopping: finishing %d in-flight attempts", len(self._in_flight))
        _, pending = await asyncio.wait(set(self._in_flight), timeout=self.grace)
        if not pending:
            return
        # Their messages come back after the visibility timeout; the operator
        # must hear that attempts were cut off, not find them "abandoned" later.
        log.warning(
            "shutdown grace of %ss ran out: cutting off %d in-flight attempts;"
            " their messages come back after the visibility timeout (%ss)",
            self.grace,
            len(pending),
            self.visibility,
        )
        for task in pending:
            task.cancel()
        await asyncio.wait(pending)

    async def _handle(self, claim: Claim) -> None:
        try:
            result = await self.hub.dispatcher.process(claim)
        except Exception as exc:
            # The message stays leased and comes back after the visibility
            # timeout, until its receive count reaches the attempt budget:
            # then it is dead-lettered, so that a poison message ends FAILED.
            message = claim.message
            with tracing.log_scope(notification_id=message.notification_id, tenant=message.tenant):
                if isinstance(exc, Unavailable):
                    # An outage outlasted the lease: not a bug, no traceback.
                    log.warning(
                        "dispatch of %s stopped: %s; the message comes back after its"
                        " visibility timeout",
                        message.notification_id,
                        exc.message,
                    )
                else:
                    log.exception("dispatch of %s failed", message.notification_id)
            await self.hub.dispatcher.give_up_quietly(message, exc)
            return
        self.results[result] += 1


def install_stop_signals(stop: asyncio.Event) -> None:
    """SIGTERM and SIGINT stop taking work; in-flight attempts finish."""
    loop = asyncio.get_running_loop()

    def handler(*_: object) -> None:
        loop.call_soon_threadsafe(stop.set)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)
