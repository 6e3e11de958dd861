"""Managing an endpoint over the API, then the delivery loop sending to a real receiver that
verifies with the official ``standardwebhooks`` package, on SQLite and PostgreSQL: the secret
the API showed is the one that signs, a rotation signs with both for the overlap and then
with the new one only, 410 disables, and re-enabling plus replay delivers the missed events
again with their ids."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from integration_hub.domain import webhooks
from integration_hub.service.webhooks.deliver import WebhookDeliverer
from providers.fake_dns import dns
from webhooks.api_env import (  # postgres_url: a fixture
    WebEnv,
    database_for,
    postgres_url,  # noqa: F401
    web_env,
)
from webhooks.receiver import WebhookReceiver


@pytest.fixture(params=["sqlite", "postgres"])
async def web(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[WebEnv]:
    """A hub that may reach the receiver on this machine (plain http, 127.0.0.0/8)."""
    async for env in web_env(
        database_for(request, tmp_path),
        webhooks_allow_http=True,
        webhooks_allowed_networks="127.0.0.0/8",
        webhooks_timeout_seconds=2.0,
    ):
        yield env


@pytest.fixture
async def receiver(web: WebEnv) -> AsyncIterator[WebhookReceiver]:
    # Its secret is replaced by the one the API shows.
    async with WebhookReceiver(webhooks.new_secret(), clock=web.clock.now) as server:
        yield server


@pytest.fixture
async def deliverer(web: WebEnv) -> AsyncIterator[WebhookDeliverer]:
    loop = web.hub.webhook_deliverer()
    try:
        yield loop
    finally:
        await loop.close()


async def ping(web: WebEnv, endpoint_id: str) -> str:
    sent = await web.client.post(f"/v1/webhooks/{endpoint_id}/test", headers=web.headers())
    assert sent.status_code == 202, sent.text
    event_id: str = sent.json()["event_id"]
    return event_id


async def test_the_secret_the_api_shows_is_the_one_that_signs(
    web: WebEnv, receiver: WebhookReceiver, deliverer: WebhookDeliverer
) -> None:
    created = await web.create(url=receiver.base_url + "/hooks")
    receiver.secrets[:] = [created["secret"]]
    event_id = await ping(web, created["id"])
    await deliverer.drain(deadline_seconds=10)
    assert receiver.rejected == []
    [verified] = receiver.verified
    assert verified.webhook_id == event_id
    assert verified.payload["type"] == "webhook.test"
    listed = await web.client.get(f"/v1/webhooks/{created['id']}/deliveries", headers=web.headers())
    [delivery] = listed.json()["items"]
    assert delivery["status"] == "succeeded"
    [attempt] = delivery["attempts"]
    assert attempt["status_code"] == 200
    assert attempt["latency_ms"] > 0


async def test_after_a_rotation_both_secrets_verify_until_the_overlap_ends(
    web: WebEnv, receiver: WebhookReceiver, deliverer: WebhookDeliverer
) -> None:
    created = await web.create(url=receiver.base_url + "/hooks")
    rotated = await web.client.post(
        f"/v1/webhooks/{created['id']}/rotate-secret", headers=web.headers()
    )
    new = rotated.json()["secret"]
    for secret in (created["secret"], new):  # a receiver holding either one verifies
        receiver.secrets[:] = [secret]
        await ping(web, created["id"])
        await deliverer.drain(deadline_seconds=10)
    assert receiver.rejected == []
    assert len(receiver.verified) == 2
    web.clock.advance(web.hub.settings.webhooks_rotation_overlap_hours * 3600 + 1)
    receiver.secrets[:] = [created["secret"]]
    await ping(web, created["id"])
    await deliverer.drain(deadline_seconds=10)
    assert len(receiver.rejected) == 1  # the old secret no longer signs
    assert len(receiver.verified) == 2


async def test_gone_disables_and_re_enabling_then_replay_sends_the_missed_events_again(
    web: WebEnv, receiver: WebhookReceiver, deliverer: WebhookDeliverer
) -> None:
    created = await web.create(
        url=receiver.base_url + "/hooks", event_types=["notification.accepted"]
    )
    receiver.secrets[:] = [created["secret"]]
    path = f"/v1/webhooks/{created['id']}"
    since = web.clock.now()
    receiver.queue_response(410, "gone")
    first = await web.submit()
    await deliverer.drain(deadline_seconds=10)
    shown = (await web.client.get(path, headers=web.headers())).json()
    assert (shown["enabled"], shown["disabled_reason"]) == (False, "gone")
    second = await web.submit()  # missed: the endpoint is disabled
    await deliverer.drain(deadline_seconds=10)
    assert len(receiver.verified) == 1  # only the request answered 410
    on = await web.client.patch(path, json={"enabled": True}, headers=web.headers())
    assert (on.json()["disabled_reason"], on.json()["consecutive_failures"]) == (None, 0)
    replay = await web.client.post(
        path + "/replay", params={"since": repr(since)}, headers=web.headers()
    )
    assert replay.json() == {"replayed": 2}
    await deliverer.drain(deadline_seconds=10)
    assert receiver.rejected == []
    replayed = [v.payload["data"]["id"] for v in receiver.verified[1:]]
    assert sorted(replayed) == sorted([first, second])
    # The same webhook-id as the first try: the receiver can tell it has seen it.
    assert receiver.verified[0].webhook_id in {v.webhook_id for v in receiver.verified[1:]}


async def test_a_name_resolving_to_loopback_is_accepted_when_set_and_blocked_when_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The outbound rule judges a name's addresses when connecting (check_url resolves
    # nothing: a name can be re-pointed after it is set); the tenant sees the refusal.
    dns(monkeypatch, {"hooks.example.com": ["127.0.0.1"]})
    envs = web_env(f"sqlite:///{tmp_path / 'hub.db'}", webhooks_allow_http=True)
    env = await anext(envs)
    try:
        async with WebhookReceiver(webhooks.new_secret(), clock=env.clock.now) as receiver:
            created = await env.create(url=f"http://hooks.example.com:{receiver.port}/hooks")
            await ping(env, created["id"])
            loop = env.hub.webhook_deliverer()
            try:
                await loop.drain(deadline_seconds=10)
            finally:
                await loop.close()
            assert receiver.requests == []
        listed = await env.client.get(
            f"/v1/webhooks/{created['id']}/deliveries", headers=env.headers()
        )
        [delivery] = listed.json()["items"]
        [attempt] = delivery["attempts"]
        assert attempt["outcome"] == "blocked"
        assert "loopback" in attempt["error"]
    finally:
        await envs.aclose()
