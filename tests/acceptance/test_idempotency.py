"""Idempotency-Key semantics, per tenant, over real HTTP."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from hubs import HubProcesses, open_store, payload
from integration_hub.domain.models import NotificationRequest, fingerprint


def test_same_key_same_payload_replays_the_original_response(
    hub: HubProcesses, client: httpx.Client
) -> None:
    h = hub.headers("acme", X_Country="ES", Idempotency_Key=str(uuid.uuid4()))
    first = client.post("/v1/notifications", json=payload("ES"), headers=h)
    second = client.post("/v1/notifications", json=payload("ES"), headers=h)
    assert first.status_code == second.status_code == 202
    assert second.json() == first.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert second.headers["Location"] == first.headers["Location"]


def test_key_order_and_whitespace_do_not_change_the_fingerprint(
    hub: HubProcesses, client: httpx.Client
) -> None:
    h = {
        **hub.headers("acme", X_Country="es", Idempotency_Key=str(uuid.uuid4())),
        "Content-Type": "application/json",
    }
    a = b'{"recipient":{"email":"ana@example.com"},"subject":"Hi","body":"x"}'
    b = b'{ "body": "x",\n  "subject": "Hi", "recipient": { "email": "ana@example.com" } }'
    first = client.post("/v1/notifications", content=a, headers=h)
    second = client.post("/v1/notifications", content=b, headers={**h, "X-Country": "ES"})
    assert second.status_code == 202
    assert second.json()["id"] == first.json()["id"]
    assert second.headers["Idempotent-Replayed"] == "true"


def test_same_key_different_payload_is_422(hub: HubProcesses, client: httpx.Client) -> None:
    h = hub.headers("acme", X_Country="ES", Idempotency_Key=str(uuid.uuid4()))
    assert client.post("/v1/notifications", json=payload("ES"), headers=h).status_code == 202
    changed = client.post("/v1/notifications", json=payload("ES", body="other"), headers=h)
    assert changed.status_code == 422
    assert changed.json()["field"] == "Idempotency-Key"
    other_country = client.post(
        "/v1/notifications", json=payload("ES"), headers={**h, "X-Country": "FR"}
    )
    assert other_country.status_code == 422


def test_same_key_in_two_tenants_makes_two_notifications(
    hub: HubProcesses, client: httpx.Client
) -> None:
    key = str(uuid.uuid4())
    a = client.post(
        "/v1/notifications",
        json=payload("ES"),
        headers=hub.headers("acme", X_Country="ES", Idempotency_Key=key),
    )
    b = client.post(
        "/v1/notifications",
        json=payload("ES"),
        headers=hub.headers("globex", X_Country="ES", Idempotency_Key=key),
    )
    assert a.status_code == b.status_code == 202
    assert a.json()["id"] != b.json()["id"]
    assert "Idempotent-Replayed" not in b.headers


def test_same_key_while_the_first_is_being_accepted_is_409(
    hub: HubProcesses, client: httpx.Client
) -> None:
    key = str(uuid.uuid4())
    body = payload("ES")

    async def reserve() -> None:
        # Another API process has reserved the key and not finished accepting.
        async with open_store(hub.database_url) as store:
            fp = fingerprint("ES", NotificationRequest.model_validate(body))
            held = await store.reserve_idempotency_key(
                "acme", key, fp, reservation="elsewhere", lock_seconds=30
            )
            assert held is None

    asyncio.run(reserve())
    resp = client.post(
        "/v1/notifications",
        json=body,
        headers=hub.headers("acme", X_Country="ES", Idempotency_Key=key),
    )
    assert resp.status_code == 409
    assert resp.headers["content-type"] == "application/problem+json"
    assert 1 <= int(resp.headers["Retry-After"]) <= 30


async def test_fifty_concurrent_identical_posts_store_one_notification(
    hub: HubProcesses,
) -> None:
    hub.create_tenant("burst")
    h = hub.headers("burst", X_Country="MX", Idempotency_Key=str(uuid.uuid4()))
    async with httpx.AsyncClient(base_url=hub.base_url, timeout=30) as client:
        responses = await asyncio.gather(
            *[client.post("/v1/notifications", json=payload("MX"), headers=h) for _ in range(50)]
        )
        listed = (await client.get("/v1/notifications", headers=hub.headers("burst"))).json()
    codes = [r.status_code for r in responses]
    assert set(codes) <= {202, 409}, codes
    ids = {r.json()["id"] for r in responses if r.status_code == 202}
    assert len(ids) == 1
    assert [n["id"] for n in listed["items"]] == list(ids)
    assert (
        sum(1 for r in responses if r.status_code == 202 and "Idempotent-Replayed" not in r.headers)
        == 1
    )
