"""The Queue contract: SQS-like semantics on every backend."""

from __future__ import annotations

import asyncio
import time

from support import Backend, notification


async def test_a_received_message_is_invisible_until_its_timeout(backend: Backend) -> None:
    q = backend.queue
    await q.enqueue("n1", "acme")
    first = await q.receive(10, visibility_timeout=30)
    assert [(m.notification_id, m.receive_count) for m in first] == [("n1", 1)]
    assert await q.receive(10, visibility_timeout=30) == []
    backend.clock.advance(31)
    again = await q.receive(10, visibility_timeout=30)
    assert [(m.notification_id, m.receive_count) for m in again] == [("n1", 2)]
    assert again[0].receipt != first[0].receipt


async def test_ack_deletes_and_a_stale_receipt_is_ignored(backend: Backend) -> None:
    q = backend.queue
    await q.enqueue("n1", "acme")
    stale = (await q.receive(1, visibility_timeout=30))[0]
    backend.clock.advance(31)
    fresh = (await q.receive(1, visibility_timeout=30))[0]
    await q.ack(stale)
    backend.clock.advance(31)
    assert [m.notification_id for m in await q.receive(1, visibility_timeout=30)] == ["n1"]
    backend.clock.advance(31)
    latest = (await q.receive(1, visibility_timeout=30))[0]
    await q.ack(fresh)  # also stale by now
    await q.ack(latest)
    backend.clock.advance(31)
    assert await q.receive(1, visibility_timeout=30) == []


async def test_delayed_messages_become_available_later(backend: Backend) -> None:
    q = backend.queue
    await q.enqueue("later", "acme", delay=5)
    await q.enqueue("now", "acme")
    assert [m.notification_id for m in await q.receive(10, visibility_timeout=30)] == ["now"]
    backend.clock.advance(5)
    assert [m.notification_id for m in await q.receive(10, visibility_timeout=30)] == ["later"]


async def test_release_with_delay_is_a_backoff(backend: Backend) -> None:
    q = backend.queue
    await q.enqueue("n1", "acme")
    msg = (await q.receive(1, visibility_timeout=30))[0]
    await q.release(msg, delay=2)
    assert await q.receive(1, visibility_timeout=30) == []
    stats = await q.stats()
    assert (stats.visible, stats.delayed, stats.in_flight) == (0, 1, 0)
    backend.clock.advance(2)
    again = await q.receive(1, visibility_timeout=30)
    assert [(m.notification_id, m.receive_count) for m in again] == [("n1", 2)]


async def test_receive_respects_the_batch_size_oldest_first(backend: Backend) -> None:
    q = backend.queue
    for i in range(5):
        await q.enqueue(f"n{i}", "acme")
        backend.clock.advance(0.001)
    batch = await q.receive(3, visibility_timeout=30)
    assert [m.notification_id for m in batch] == ["n0", "n1", "n2"]
    rest = await q.receive(10, visibility_timeout=30)
    assert [m.notification_id for m in rest] == ["n3", "n4"]


async def test_concurrent_receivers_never_get_the_same_message(backend: Backend) -> None:
    q = backend.queue
    for i in range(50):
        await q.enqueue(f"n{i}", "acme")
    batches = await asyncio.gather(*[q.receive(7, visibility_timeout=30) for _ in range(10)])
    ids = [m.notification_id for b in batches for m in b]
    assert len(ids) == len(set(ids)) == 50


async def test_stats_count_visible_in_flight_and_delayed(backend: Backend) -> None:
    q = backend.queue
    assert (await q.stats()).visible == 0
    await q.enqueue("a", "acme")
    await q.enqueue("b", "acme")
    await q.enqueue("c", "acme", delay=60)
    await q.receive(1, visibility_timeout=30)
    backend.clock.advance(10)
    stats = await q.stats()
    assert (stats.visible, stats.in_flight, stats.delayed) == (1, 1, 1)
    assert stats.oldest_age_seconds >= 10


async def test_wait_for_messages_returns_early_on_enqueue(backend: Backend) -> None:
    q = backend.queue
    started = time.monotonic()
    waiter = asyncio.create_task(q.wait_for_messages(5.0))
    await asyncio.sleep(0.05)
    await q.enqueue("n1", "acme")
    await asyncio.wait_for(waiter, 2.0)
    assert time.monotonic() - started < 2.0


async def test_wait_for_messages_returns_at_once_when_some_are_available(backend: Backend) -> None:
    q = backend.queue
    await q.enqueue("n1", "acme")
    await asyncio.wait_for(q.wait_for_messages(5.0), 1.0)


async def test_outbox_lists_deliveries_newest_first_per_tenant(backend: Backend) -> None:
    from integration_hub.domain.delivery import OutboundMessage

    for tenant_id in ("acme", "globex", "acme"):
        n = notification(tenant_id, clock=backend.clock)
        await backend.outbox.append(
            OutboundMessage(n.id, tenant_id, "ES", n.channel, n.request.recipient, "s", "b", {}, 1),
            f"pm-{n.id}",
        )
    everything = await backend.outbox.list_outbox()
    assert [e.tenant for e in everything] == ["acme", "globex", "acme"][::-1]
    acme = await backend.outbox.list_outbox("acme")
    assert len(acme) == 2
    assert all(e.recipient == "ana@example.com" for e in acme)
