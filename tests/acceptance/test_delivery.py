"""Every channel end to end: API process -> SQLite queue -> worker process -> provider."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from hubs import HubProcesses, payload, wait_terminal

BRIEF = {
    "ES": "email",
    "FR": "email",
    "IT": "email",
    "GR": "email",
    "MX": "whatsapp",
    "AR": "whatsapp",
    "CO": "whatsapp",
    "US": "sms",
    "CA": "sms",
    "UK": "sms",
}


def post(
    client: httpx.Client,
    hub: HubProcesses,
    tenant: str,
    country: str,
    body: dict[str, object] | None = None,
) -> httpx.Response:
    headers = hub.headers(tenant, X_Country=country, Idempotency_Key=str(uuid.uuid4()))
    return client.post("/v1/notifications", json=body or payload(country), headers=headers)


def outbox(hub: HubProcesses, tenant: str) -> list[dict[str, object]]:
    done = hub.cli("outbox", "--tenant", tenant, "--limit", "100000", "--json")
    assert done.returncode == 0, done.stderr
    entries: list[dict[str, object]] = json.loads(done.stdout)
    return entries


@pytest.mark.parametrize("country", sorted(BRIEF))
def test_every_country_of_the_brief_reaches_done_on_its_channel(
    hub: HubProcesses, client: httpx.Client, country: str
) -> None:
    resp = post(client, hub, "acme", country)
    assert resp.status_code == 202, resp.text
    accepted = resp.json()
    assert accepted["status"] == "RECEIVED"
    assert accepted["channel"] == BRIEF[country]
    assert resp.headers["Location"] == f"/v1/notifications/{accepted['id']}"
    view = wait_terminal(client, hub.headers("acme"), accepted["id"])
    assert view["status"] == "DONE", view
    assert view["channel"] == BRIEF[country]
    assert view["provider"] == "sandbox"
    assert [a["outcome"] for a in view["attempts"]] == ["delivered"]
    delivered = [e for e in outbox(hub, "acme") if e["notification_id"] == accepted["id"]]
    assert len(delivered) == 1
    assert delivered[0]["channel"] == BRIEF[country]


def test_uk_is_accepted_and_stored_as_gb(hub: HubProcesses, client: httpx.Client) -> None:
    resp = post(client, hub, "acme", "uk")
    assert resp.status_code == 202
    assert resp.json()["country"] == "GB"


def test_transient_twice_then_success_takes_three_attempts(
    hub: HubProcesses, client: httpx.Client
) -> None:
    body = payload("FR", metadata={"sandbox": {"fail": "transient", "times": 2}})
    accepted = post(client, hub, "acme", "FR", body).json()
    view = wait_terminal(client, hub.headers("acme"), accepted["id"])
    assert view["status"] == "DONE"
    assert [a["outcome"] for a in view["attempts"]] == ["transient", "transient", "delivered"]
    assert view["attempts"][0]["error_class"] == "sandbox_transient"
    assert view["attempts"][0]["error_code"] == "SANDBOX_TRANSIENT"
    delivered = [e for e in outbox(hub, "acme") if e["notification_id"] == accepted["id"]]
    assert [e["attempt"] for e in delivered] == [3]


def test_transient_failures_past_the_budget_end_failed(
    hub: HubProcesses, client: httpx.Client
) -> None:
    body = payload("IT", metadata={"sandbox": {"fail": "transient"}})
    accepted = post(client, hub, "acme", "IT", body).json()
    view = wait_terminal(client, hub.headers("acme"), accepted["id"])
    assert view["status"] == "FAILED"
    assert len(view["attempts"]) == 5  # the default budget
    assert "budget" in view["last_error"]


def test_permanent_failure_is_failed_after_one_attempt_and_dead_lettered(
    hub: HubProcesses, client: httpx.Client
) -> None:
    body = payload("US", metadata={"sandbox": {"fail": "permanent"}})
    accepted = post(client, hub, "globex", "US", body).json()
    view = wait_terminal(client, hub.headers("globex"), accepted["id"])
    assert view["status"] == "FAILED"
    assert [a["outcome"] for a in view["attempts"]] == ["permanent"]
    assert view["last_error"].startswith("permanent")
    listed = hub.cli("dlq", "list", "--tenant", "globex", "--json")
    assert accepted["id"] in [d["id"] for d in json.loads(listed.stdout)]
    others = hub.cli("dlq", "list", "--tenant", "acme", "--json")
    assert accepted["id"] not in [d["id"] for d in json.loads(others.stdout)]


def test_redrive_brings_a_dead_letter_back(hub: HubProcesses, client: httpx.Client) -> None:
    body = payload("MX", metadata={"sandbox": {"fail": "permanent", "times": 1}})
    accepted = post(client, hub, "acme", "MX", body).json()
    assert wait_terminal(client, hub.headers("acme"), accepted["id"])["status"] == "FAILED"
    done = hub.cli("dlq", "redrive", accepted["id"])
    assert done.returncode == 0, done.stderr
    view = wait_terminal(client, hub.headers("acme"), accepted["id"])
    assert view["status"] == "DONE"
    assert [a["outcome"] for a in view["attempts"]] == ["permanent", "delivered"]
    again = hub.cli("dlq", "redrive", accepted["id"])
    assert again.returncode == 1  # no longer a dead letter


def test_another_tenants_notification_is_404(hub: HubProcesses, client: httpx.Client) -> None:
    accepted = post(client, hub, "acme", "ES").json()
    resp = client.get(f"/v1/notifications/{accepted['id']}", headers=hub.headers("globex"))
    assert resp.status_code == 404
    assert resp.headers["content-type"] == "application/problem+json"
    listed = client.get("/v1/notifications", headers=hub.headers("globex"), params={"limit": 100})
    assert accepted["id"] not in [n["id"] for n in listed.json()["items"]]


def test_listing_is_newest_first_with_a_cursor(hub: HubProcesses, client: httpx.Client) -> None:
    hub.create_tenant("lister")
    ids = [post(client, hub, "lister", c).json()["id"] for c in ["ES", "MX", "US", "ES", "CA"]]
    headers = hub.headers("lister")
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/v1/notifications", headers=headers, params=params).json()
        seen += [n["id"] for n in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    spain = client.get("/v1/notifications", headers=headers, params={"country": "es"}).json()
    assert [n["id"] for n in spain["items"]] == [ids[3], ids[0]]
    for notification_id in ids:
        wait_terminal(client, headers, notification_id)
    done = client.get("/v1/notifications", headers=headers, params={"status": "DONE"}).json()
    assert len(done["items"]) == 5
