"""Many processes on one PostgreSQL database: 2 APIs, 3 workers, one of them SIGKILLed.

Five thousand notifications go in through both APIs, a fifth of them sent to
both at once under the same Idempotency-Key, and a worker is killed halfway.
Every accepted notification must end DONE exactly once. The sandbox writes
its delivery in its own transaction before the worker records the outcome,
so a worker killed between the two leaves a delivery whose attempt is never
finished; the attempt is retried after the lease and delivered again. That
crash window is the only source of duplicates allowed, and each duplicate
must be accounted for by an abandoned attempt of the killed worker.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
import pytest

from hubs import HubProcesses, make_hub, payload

TOTAL = 5000
DUPLICATED = 1000  # keys sent to both APIs at the same time
CONCURRENCY = 48
COUNTRIES = ["ES", "FR", "MX", "CO", "US", "CA"]
# Each provider call takes this long, so that every worker always holds claims.
PROVIDER_SECONDS = 0.2

pytestmark = [pytest.mark.acceptance, pytest.mark.timeout(300)]


@dataclass
class Sent:
    """What the clients were told."""

    ids: dict[str, set[str]] = field(default_factory=dict)  # Idempotency-Key -> ids
    first_answers: Counter[str] = field(default_factory=Counter)  # not replayed, per key
    replays: int = 0
    conflicts: int = 0  # 409 while the twin request was being accepted


async def post(
    client: httpx.AsyncClient, hub: HubProcesses, key: str, country: str, sent: Sent
) -> None:
    """Submit until accepted, as a careful client does: a 409 (the twin is in flight) is
    retried after Retry-After, and a dropped connection (a keep-alive connection the
    server closed as it was reused) is retried with the same Idempotency-Key."""
    headers = hub.headers("acme", X_Country=country, Idempotency_Key=key)
    dropped = 0
    while True:
        body = payload(country, metadata={"sandbox": {"delay": PROVIDER_SECONDS}})
        try:
            resp = await client.post("/v1/notifications", json=body, headers=headers)
        except (httpx.ReadError, httpx.RemoteProtocolError, httpx.ConnectError):
            dropped += 1
            assert dropped <= 5, "the API keeps dropping connections"
            await asyncio.sleep(0.05)
            continue
        if resp.status_code != 409:
            break
        sent.conflicts += 1
        await asyncio.sleep(min(float(resp.headers["Retry-After"]), 0.2))
    assert resp.status_code == 202, resp.text
    sent.ids.setdefault(key, set()).add(resp.json()["id"])
    if resp.headers.get("Idempotent-Replayed") == "true":
        sent.replays += 1
    else:
        sent.first_answers[key] += 1


async def load(hub: HubProcesses, second_api: str, on_halfway: Any) -> Sent:
    sent = Sent()
    gate = asyncio.Semaphore(CONCURRENCY)
    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with (
        httpx.AsyncClient(base_url=hub.base_url, timeout=30, limits=limits) as one,
        httpx.AsyncClient(base_url=second_api, timeout=30, limits=limits) as two,
    ):

        async def submit(i: int) -> None:
            key, country = str(uuid.uuid4()), COUNTRIES[i % len(COUNTRIES)]
            async with gate:
                if i % (TOTAL // DUPLICATED) == 0:
                    await asyncio.gather(
                        post(one, hub, key, country, sent), post(two, hub, key, country, sent)
                    )
                else:
                    await post(one if i % 2 else two, hub, key, country, sent)
            if i == TOTAL // 2:
                on_halfway()

        await asyncio.gather(*[submit(i) for i in range(TOTAL)])
    return sent


async def wait_all_done(url: str, expected: int, within: float) -> float:
    """Seconds until every notification is DONE."""
    started = time.monotonic()
    conn = await asyncpg.connect(url)
    try:
        while time.monotonic() - started < within:
            done = await conn.fetchval("SELECT count(*) FROM notifications WHERE status = 'DONE'")
            if done >= expected:
                break
            await asyncio.sleep(0.25)
        return time.monotonic() - started
    finally:
        await conn.close()


async def facts(url: str) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    try:
        return {
            "statuses": dict(
                await conn.fetch("SELECT status, count(*) FROM notifications GROUP BY status")
            ),
            "ids": {r["id"] for r in await conn.fetch("SELECT id FROM notifications")},
            "delivered_attempts": dict(
                await conn.fetch(
                    "SELECT notification_id, count(*) FROM attempts"
                    " WHERE outcome = 'delivered' GROUP BY notification_id"
                )
            ),
            "deliveries": [
                (r["notification_id"], r["attempt"])
                for r in await conn.fetch("SELECT notification_id, attempt FROM outbox")
            ],
            "abandoned": {
                (r["notification_id"], r["number"])
                for r in await conn.fetch(
                    "SELECT notification_id, number FROM attempts WHERE outcome IS NULL"
                )
            },
            "queue": await conn.fetchval("SELECT count(*) FROM queue"),
        }
    finally:
        await conn.close()


def test_two_apis_and_three_workers_deliver_each_notification_once(tmp_path: Path) -> None:
    hub = make_hub(
        tmp_path,
        "postgres",
        # Long enough that only the killed worker's claims are ever taken over.
        IHUB_VISIBILITY_TIMEOUT_SECONDS="8",
        IHUB_PROVIDER_TIMEOUT_SECONDS="5",
        IHUB_TENANT_CACHE_SECONDS="2",
        IHUB_DATABASE_POOL_SIZE="8",
    )
    twin = HubProcesses(hub.workdir / "twin", hub.database_url, hub.env, keys=hub.keys)
    twin.workdir.mkdir()
    try:
        hub.create_tenant("acme")
        hub.start_api()
        twin.start_api()
        workers = [hub.start_worker(f"worker{i}") for i in range(3)]
        doomed = random.choice(workers)
        killed_at: list[float] = []

        def kill() -> None:
            doomed.send_signal(signal.SIGKILL)
            killed_at.append(time.monotonic())

        started = time.monotonic()
        sent = asyncio.run(load(hub, twin.base_url, kill))
        accepted_in = time.monotonic() - started
        drained_in = asyncio.run(wait_all_done(hub.database_url, TOTAL, within=60))
        total_time = time.monotonic() - started
        seen = asyncio.run(facts(hub.database_url))
    finally:
        twin.stop()
        hub.stop()

    assert doomed.wait() == -signal.SIGKILL
    assert killed_at, "the worker was never killed"
    # Every key made one notification, whichever API answered and however often.
    assert len(sent.ids) == TOTAL
    assert all(len(ids) == 1 for ids in sent.ids.values())
    assert set(sent.first_answers.values()) == {1}
    assert sent.replays == DUPLICATED
    accepted = {nid for ids in sent.ids.values() for nid in ids}
    assert seen["ids"] == accepted
    # Every one DONE, by exactly one delivered attempt, and the queue is empty.
    assert seen["statuses"] == {"DONE": TOTAL}, hub.logs()[-5000:]
    assert set(seen["delivered_attempts"]) == accepted
    assert set(seen["delivered_attempts"].values()) == {1}
    assert seen["queue"] == 0
    # One delivery each, plus at most one per attempt the killed worker abandoned
    # after the sandbox had delivered it.
    per_id = Counter(nid for nid, _ in seen["deliveries"])
    assert set(per_id) == accepted
    extra = [(nid, n) for nid, n in seen["deliveries"] if per_id[nid] > 1]
    duplicates = len(seen["deliveries"]) - TOTAL
    assert seen["abandoned"], "the killed worker held no claim: the crash was not exercised"
    assert duplicates <= len(seen["abandoned"])
    crash_window = {d for d in extra if d in seen["abandoned"]}
    assert duplicates == len(crash_window), (extra, seen["abandoned"])
    print(
        f"\nmultiprocess: accepted={len(accepted)} done={seen['statuses']['DONE']}"
        f" deliveries={len(seen['deliveries'])} duplicates={duplicates}"
        f" abandoned_claims={len(seen['abandoned'])} conflicts_409={sent.conflicts}"
        f" replays={sent.replays} accept_s={accepted_in:.1f} drain_s={drained_in:.1f}"
        f" total_s={total_time:.1f}"
    )
