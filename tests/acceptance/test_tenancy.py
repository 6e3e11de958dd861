"""Tenants as first-class: isolation crosswise, key rotation, the admin API, quotas,
disabling. Every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hubs import FAST, HubProcesses, make_hub, payload, wait_terminal

ADMIN = {"Authorization": f"Bearer {FAST['IHUB_ADMIN_TOKEN']}"}


def post(
    client: httpx.Client,
    hub: HubProcesses,
    tenant: str,
    country: str = "ES",
    key: str | None = None,
    headers: dict[str, str] | None = None,
    **body: Any,
) -> httpx.Response:
    h = hub.headers(tenant, X_Country=country, Idempotency_Key=key or str(uuid.uuid4()))
    h.update(headers or {})
    return client.post("/v1/notifications", json=payload(country, **body), headers=h)


def listed(client: httpx.Client, hub: HubProcesses, tenant: str) -> list[str]:
    ids: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/notifications", headers=hub.headers(tenant), params=params).json()
        ids += [n["id"] for n in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return ids


def test_every_endpoint_is_isolated_crosswise(hub: HubProcesses, client: httpx.Client) -> None:
    a, b = f"iso-a-{uuid.uuid4().hex[:6]}", f"iso-b-{uuid.uuid4().hex[:6]}"
    hub.create_tenant(a)
    hub.create_tenant(b)
    mine = post(client, hub, a).json()["id"]
    theirs = post(client, hub, b, "MX", metadata={"sandbox": {"fail": "permanent"}}).json()["id"]
    wait_terminal(client, hub.headers(b), theirs)
    # A's key naming B: forbidden on every tenant endpoint.
    forged = {"Authorization": f"Bearer {hub.keys[a]}", "X-Tenant": b}
    assert client.get(f"/v1/notifications/{theirs}", headers=forged).status_code == 403
    assert client.get("/v1/notifications", headers=forged).status_code == 403
    assert post(client, hub, a, headers={"X-Tenant": b}).status_code == 403
    # A's own credentials: B's notification does not exist for A.
    assert client.get(f"/v1/notifications/{theirs}", headers=hub.headers(a)).status_code == 404
    assert theirs not in listed(client, hub, a)
    assert mine not in listed(client, hub, b)
    # The same Idempotency-Key in both tenants makes two notifications.
    key = str(uuid.uuid4())
    first, second = post(client, hub, a, key=key), post(client, hub, b, key=key)
    assert first.json()["id"] != second.json()["id"]
    assert "Idempotent-Replayed" not in second.headers
    # Dead letters and redrive are per tenant.
    letters_a = client.get(f"/admin/v1/tenants/{a}/dead-letters", headers=ADMIN).json()
    assert theirs not in [d["id"] for d in letters_a]
    wrong = client.post(f"/admin/v1/tenants/{a}/dead-letters/{theirs}/redrive", headers=ADMIN)
    assert wrong.status_code == 404
    right = client.post(f"/admin/v1/tenants/{b}/dead-letters/{theirs}/redrive", headers=ADMIN)
    assert right.status_code == 200
    assert right.json() == {"redriven": [theirs]}


def test_a_sql_queue_has_no_dead_letter_queue_of_its_own(
    hub: HubProcesses, client: httpx.Client
) -> None:
    tenant = f"qdl-{uuid.uuid4().hex[:6]}"
    hub.create_tenant(tenant)
    base = f"/admin/v1/tenants/{tenant}/queue-dead-letters"
    assert client.get(base, headers=ADMIN).json() == []
    assert client.post(f"{base}/redrive", headers=ADMIN).json() == {"redriven": []}
    missing = client.post(f"{base}/some-id/redrive", headers=ADMIN)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["field"] == "notification_id"
    assert (
        client.get("/admin/v1/tenants/nobody/queue-dead-letters", headers=ADMIN).status_code == 404
    )


def test_keys_rotate_without_downtime_and_revocation_is_immediate(
    hub: HubProcesses, client: httpx.Client
) -> None:
    tenant = f"rot-{uuid.uuid4().hex[:6]}"
    old = hub.create_tenant(tenant)
    created = json.loads(hub.cli("keys", "create", tenant, "--json").stdout)
    new = created["api_key"]
    for key in (old, new):
        hub.keys[tenant] = key
        assert post(client, hub, tenant).status_code == 202
    listing = json.loads(hub.cli("keys", "list", tenant, "--json").stdout)
    assert len(listing) == 2
    assert all("hash" not in k for k in listing)
    old_id = old.split("_")[1]
    assert hub.cli("keys", "revoke", tenant, old_id).returncode == 0
    hub.keys[tenant] = old
    refused = post(client, hub, tenant)
    assert refused.status_code == 401
    assert refused.headers["content-type"] == "application/problem+json"
    hub.keys[tenant] = new
    assert post(client, hub, tenant).status_code == 202
    again = hub.cli("keys", "revoke", tenant, old_id)
    assert again.returncode == 1  # already revoked
    other = hub.cli("keys", "revoke", "acme", new.split("_")[1])
    assert other.returncode == 1  # not acme's key


def test_the_admin_api_wants_the_admin_token_and_never_a_tenant_key(
    hub: HubProcesses, client: httpx.Client
) -> None:
    assert client.get("/admin/v1/tenants").status_code == 401
    assert (
        client.get("/admin/v1/tenants", headers={"Authorization": "Bearer nope"}).status_code == 401
    )
    tenant_key = {"Authorization": f"Bearer {hub.keys['acme']}", "X-Tenant": "acme"}
    assert client.get("/admin/v1/tenants", headers=tenant_key).status_code == 401
    assert client.get("/admin/v1/tenants", headers=ADMIN).status_code == 200


def test_the_admin_api_manages_a_tenant_end_to_end(hub: HubProcesses, client: httpx.Client) -> None:
    tenant = f"adm-{uuid.uuid4().hex[:6]}"
    made = client.post("/admin/v1/tenants", json={"tenant": tenant, "name": "Adm"}, headers=ADMIN)
    assert made.status_code == 201, made.text
    hub.keys[tenant] = made.json()["api_key"]
    assert (
        client.post("/admin/v1/tenants", json={"tenant": tenant}, headers=ADMIN).status_code == 409
    )
    assert post(client, hub, tenant).status_code == 202
    # Limits: only Spain and Mexico, budget 2.
    limits = {"enabled_countries": ["es", "MX"], "max_attempts": 2}
    view = client.patch(f"/admin/v1/tenants/{tenant}/limits", json=limits, headers=ADMIN)
    assert view.status_code == 200, view.text
    assert sorted(view.json()["routes"]) == ["ES", "MX"]
    refused = post(client, hub, tenant, "US")
    assert refused.status_code == 422
    assert refused.json()["supported_countries"] == ["ES", "MX"]
    failing = post(client, hub, tenant, "MX", metadata={"sandbox": {"fail": "transient"}})
    done = wait_terminal(client, hub.headers(tenant), failing.json()["id"])
    assert (done["status"], len(done["attempts"])) == ("FAILED", 2)
    bad = client.patch(
        f"/admin/v1/tenants/{tenant}/limits", json={"max_attempts": 0}, headers=ADMIN
    )
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"
    # Credentials are write-only and validated.
    secret = "whatsapp-token-only-the-admin-api-saw"
    settings = {"phone_number_id": "123", "access_token": secret}
    put = client.put(
        f"/admin/v1/tenants/{tenant}/credentials/whatsapp_cloud", json=settings, headers=ADMIN
    )
    assert put.status_code == 204
    shown = client.get(f"/admin/v1/tenants/{tenant}", headers=ADMIN)
    assert shown.json()["configured_providers"] == ["whatsapp_cloud"]
    assert secret not in shown.text
    invalid = client.put(
        f"/admin/v1/tenants/{tenant}/credentials/twilio", json={"x": secret}, headers=ADMIN
    )
    assert invalid.status_code == 422
    assert secret not in invalid.text
    # Keys through the admin API.
    key = client.post(f"/admin/v1/tenants/{tenant}/keys", headers=ADMIN).json()
    assert (
        client.delete(f"/admin/v1/tenants/{tenant}/keys/{key['key_id']}", headers=ADMIN).status_code
        == 204
    )
    hub.keys[tenant] = key["api_key"]
    assert post(client, hub, tenant).status_code == 401
    assert client.get("/admin/v1/tenants/nobody-here", headers=ADMIN).status_code == 404


def test_a_daily_quota_refuses_with_429_and_stores_nothing(
    hub: HubProcesses, client: httpx.Client
) -> None:
    tenant = f"quota-{uuid.uuid4().hex[:6]}"
    hub.create_tenant(tenant)
    assert hub.cli("tenants", "set-limits", tenant, "--daily-quota", "3").returncode == 0
    keys = [str(uuid.uuid4()) for _ in range(3)]
    for key in keys:
        assert post(client, hub, tenant, key=key).status_code == 202
    over = post(client, hub, tenant)
    assert over.status_code == 429
    assert over.headers["content-type"] == "application/problem+json"
    assert 1 <= int(over.headers["Retry-After"]) <= 86400
    replay = post(client, hub, tenant, key=keys[0])  # replays are not new notifications
    assert replay.status_code == 202
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert len(listed(client, hub, tenant)) == 3


async def test_a_rate_limit_sheds_a_burst_with_429(hub: HubProcesses) -> None:
    tenant = f"rate-{uuid.uuid4().hex[:6]}"
    hub.create_tenant(tenant)
    assert hub.cli("tenants", "set-limits", tenant, "--rate-limit", "3").returncode == 0
    async with httpx.AsyncClient(base_url=hub.base_url, timeout=30) as client:
        responses = await asyncio.gather(
            *[
                client.post(
                    "/v1/notifications",
                    json=payload("ES"),
                    headers=hub.headers(tenant, X_Country="ES", Idempotency_Key=str(uuid.uuid4())),
                )
                for _ in range(20)
            ]
        )
    codes = [r.status_code for r in responses]
    assert set(codes) <= {202, 429}
    assert codes.count(429) >= 1
    assert all(r.headers["Retry-After"] == "1" for r in responses if r.status_code == 429)
    with httpx.Client(base_url=hub.base_url) as client:
        assert len(listed(client, hub, tenant)) == codes.count(202)


@pytest.fixture
def idle_hub(tmp_path: Path, backend_kind: str) -> Iterator[HubProcesses]:
    """An API with no worker: notifications stay queued until a test starts one."""
    procs = make_hub(tmp_path, backend_kind)
    try:
        procs.create_tenant("acme")
        procs.start_api()
        yield procs
    finally:
        procs.stop()


def test_a_disabled_tenants_queue_fails_unsent_and_its_keys_are_refused(
    idle_hub: HubProcesses,
) -> None:
    hub = idle_hub
    with httpx.Client(base_url=hub.base_url, timeout=10) as client:
        queued = [post(client, hub, "acme", c).json()["id"] for c in ("ES", "MX", "US")]
        assert hub.cli("tenants", "disable", "acme").returncode == 0
        refused = post(client, hub, "acme")
        assert refused.status_code == 403
        hub.start_worker()
    # The tenant's own key is refused now, so watch through the operator's CLI.
    deadline = time.monotonic() + 30
    pending = set(queued)
    while pending and time.monotonic() < deadline:
        for nid in list(pending):
            shown = json.loads(hub.cli("status", nid, "--json").stdout)
            if shown["status"] == "FAILED":
                assert shown["attempts"][-1]["error_class"] == "tenant_disabled"
                pending.discard(nid)
        time.sleep(0.2)
    assert not pending, hub.logs()
    outbox = json.loads(hub.cli("outbox", "--json").stdout)
    assert outbox == []
    assert hub.cli("tenants", "enable", "acme").returncode == 0
