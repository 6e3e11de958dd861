"""The retention contract: what a purge forgets, and what it must keep, on every backend."""

from __future__ import annotations

from integration_hub.domain import webhooks
from integration_hub.domain.delivery import OutboundMessage
from integration_hub.domain.models import Attempt, Notification, Outcome, from_epoch
from integration_hub.domain.receipts import DeliveryState, Receipt, SuppressionReason
from integration_hub.domain.routing import Channel
from integration_hub.domain.status import Status
from integration_hub.domain.webhooks import (
    AttemptOutcome,
    AttemptResult,
    DisablePolicy,
    Endpoint,
)
from integration_hub.ports import Match, Suppression
from support import Backend, accept, notification


async def purge(backend: Backend, older_than_seconds: float) -> dict[str, int]:
    """The backend's own purge."""
    if backend.name == "postgres":
        from integration_hub.adapters.postgres.retention import purge_database as pg_purge
        from integration_hub.adapters.postgres.store import PostgresStore

        assert isinstance(backend.store, PostgresStore)
        return await pg_purge(backend.store.db, older_than_seconds=older_than_seconds)
    from integration_hub.adapters.sqlite.retention import purge_database
    from integration_hub.adapters.sqlite.store import SqliteStore

    assert isinstance(backend.store, SqliteStore)
    return await purge_database(backend.store.db, older_than_seconds=older_than_seconds)


async def finish(
    backend: Backend, n: Notification, status: Status, provider_message_id: str | None = None
) -> None:
    """Claim and finish one attempt; a delivery lands in the outbox."""
    token = "t-" + n.id
    claimed = await backend.store.claim(n.id, token, lease_seconds=30, max_attempts=5)
    assert claimed is not None
    assert claimed.claimed_by == token
    outcome = Outcome.DELIVERED if status is Status.DONE else Outcome.PERMANENT
    if status is Status.DONE:
        await backend.outbox.append(
            OutboundMessage(
                n.id, n.tenant, n.country, n.channel, n.request.recipient, "s", "b", {}, 1
            ),
            f"pm-{n.id}",
        )
    done = Attempt(
        number=1,
        provider="sandbox",
        started_at=from_epoch(0),
        outcome=outcome,
        latency_ms=1.0,
        provider_message_id=provider_message_id,
    )
    assert await backend.store.complete_attempt(
        n.id, token, done, status=status, dead_letter_reason="permanent: no"
    )


def nothing(**counts: int) -> dict[str, int]:
    names = (
        "notifications",
        "attempts",
        "dead_letters",
        "outbox",
        "delivery_events",
        "queue",
        "idempotency_keys",
        "webhook_events",
        "webhook_deliveries",
        "webhook_attempts",
    )
    return {name: counts.get(name, 0) for name in names}


async def test_a_purge_forgets_old_finished_notifications_with_their_history(
    backend: Backend,
) -> None:
    store = backend.store
    old_done, old_failed, unfinished, recent = (notification(clock=backend.clock) for _ in range(4))
    for n in (old_done, old_failed, unfinished, recent):
        await accept(backend, n)
    await finish(backend, old_done, Status.DONE, provider_message_id="pm-old")
    await finish(backend, old_failed, Status.FAILED)
    now = from_epoch(backend.clock.now())
    delivered = Receipt("acme", "sandbox", "pm-old", DeliveryState.DELIVERED, "ok", None, now, now)
    assert (await store.record_receipt(delivered)).match is Match.RECORDED
    # A suppression its receipt caused is the tenant's list: no purge removes it.
    suppression = Suppression(
        "acme", Channel.EMAIL, "ana@example.com", SuppressionReason.HARD_BOUNCE, now, old_done.id
    )
    await store.add_suppression(suppression)
    # Webhooks of the old ones go with them; a test event of no notification by age.
    hooks = store
    endpoint = Endpoint("ep_1", "acme", "https://hooks.example.com/", 0.0, 0.0, {"s": "x"})
    await hooks.create_endpoint(endpoint)
    await hooks.append_event(webhooks.ping_event(endpoint, backend.clock.now()))
    await hooks.fan_out()
    ok = AttemptResult(AttemptOutcome.SUCCESS, status_code=200)
    # A notification's later events are due once its earlier ones are delivered.
    while due := await hooks.claim_deliveries(
        token="t", lease_seconds=9, limit=99, per_endpoint=99
    ):
        for d in due:
            assert await hooks.finish_attempt(d, "t", ok, policy=DisablePolicy())
    backend.clock.advance(100)
    await finish(backend, recent, Status.DONE)

    counts = await purge(backend, older_than_seconds=50)

    # Events: accepted, done and delivered; accepted and dead-lettered; the test event.
    # Each was delivered once (so were the accepted of the two that stay).
    assert counts == nothing(
        notifications=2,
        attempts=2,
        dead_letters=1,
        outbox=1,
        delivery_events=1,
        queue=2,
        webhook_events=6,
        webhook_deliveries=6,
        webhook_attempts=6,
    )
    left = await hooks.list_events("acme")
    assert sorted(e.notification_id or "" for e in left) == sorted(
        [unfinished.id, recent.id, recent.id]
    )
    kept_deliveries = await hooks.list_deliveries("acme", "ep_1")
    assert sorted(d.event.notification_id or "" for d in kept_deliveries) == sorted(
        [unfinished.id, recent.id]
    )
    assert await store.delivery_events("acme", old_done.id) == []
    assert (await store.record_receipt(delivered)).match is Match.UNMATCHED
    assert await store.get_suppression("acme", Channel.EMAIL, "ana@example.com") == suppression
    assert await store.get_notification(None, old_done.id) is None
    assert await store.get_notification(None, old_failed.id) is None
    assert await store.list_dead_letters(None) == []
    kept = await store.get_notification(None, recent.id)
    assert kept is not None
    assert [a.outcome for a in kept.attempts] == [Outcome.DELIVERED]
    still = await store.get_notification(None, unfinished.id)
    assert still is not None
    assert still.status is Status.RECEIVED
    assert [e.notification_id for e in await backend.outbox.list_outbox()] == [recent.id]
    queued = await backend.queue.receive(10, visibility_timeout=30)
    assert sorted(m.notification_id for m in queued) == sorted([unfinished.id, recent.id])
    # Keys outlive their notifications until their own TTL: a retry still replays.
    replay = await store.reserve_idempotency_key(
        "acme", old_done.idempotency_key, "fp", reservation="x", lock_seconds=10
    )
    assert replay is not None
    assert replay.response == {"id": old_done.id}
    assert await purge(backend, older_than_seconds=50) == nothing()


async def test_a_purge_forgets_expired_idempotency_keys_only(backend: Backend) -> None:
    store = backend.store
    for _ in range(3):
        await accept(backend, notification(clock=backend.clock))  # kept an hour
    await store.reserve_idempotency_key("acme", "abandoned", "fp", reservation="r", lock_seconds=10)
    backend.clock.advance(11)
    assert await purge(backend, older_than_seconds=86400) == nothing(idempotency_keys=1)
    backend.clock.advance(3600)
    assert await purge(backend, older_than_seconds=86400) == nothing(idempotency_keys=3)
    # Nothing unfinished is ever purged, however old.
    assert len(await store.list_notifications("acme")) == 3
