"""Suppression lists through the tenant API, the admin API and the dispatcher, and the
delivery state in notification views and listings, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote

from integration_hub.domain.receipts import Lifter, SuppressionReason
from integration_hub.domain.routing import Channel
from integration_hub.domain.status import Status
from integration_hub.service.receipts import ReceiptPolicy
from receipts_api.conftest import Env

PHONE = "+15005550001"


async def test_a_queued_notification_whose_recipient_became_suppressed_fails_unsent(
    env: Env,
) -> None:
    accepted = await env.submit("US", phone=PHONE)
    assert accepted.status_code == 202
    nid = accepted.json()["id"]
    added = await env.client.post(
        "/admin/v1/tenants/acme/suppressions",
        json={"channel": "sms", "address": "+1 500 555 0001"},
        headers=env.admin(),
    )
    assert added.status_code == 201, added.text
    assert added.json()["address"] == PHONE
    await env.dispatch("twilio", "SM-never-sent")
    assert env.providers.providers["twilio"].sent == []  # no provider call
    view = await env.view(nid)
    assert view["status"] == str(Status.FAILED)
    assert view["delivery"] is None
    assert view["delivery_state"] is None
    [attempt] = view["attempts"]
    assert attempt["error_class"] == "suppressed"
    assert attempt["outcome"] == "permanent"
    [letter] = await env.hub.store.list_dead_letters("acme", limit=10)
    assert "suppress" in letter.reason


async def test_an_idempotent_replay_is_answered_even_after_suppression(env: Env) -> None:
    headers = {**env.headers(), "X-Country": "US", "Idempotency-Key": "replay-1"}
    body = {"recipient": {"phone": PHONE}, "body": "hello"}
    first = await env.client.post("/v1/notifications", json=body, headers=headers)
    assert first.status_code == 202
    await env.hub.receipts.add("acme", Channel.SMS, PHONE)
    again = await env.client.post("/v1/notifications", json=body, headers=headers)
    assert again.status_code == 202
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    fresh = await env.client.post(
        "/v1/notifications", json=body, headers={**headers, "Idempotency-Key": "replay-2"}
    )
    assert fresh.status_code == 422
    assert fresh.json()["type"].endswith(":suppressed")


async def test_a_tenant_lifts_its_own_but_not_the_operators(env: Env) -> None:
    for address in ("ops@example.com", "bounced@example.com"):
        await env.client.post(
            "/admin/v1/tenants/acme/suppressions",
            json={"channel": "email", "address": address, "note": "from the runbook"},
            headers=env.admin(),
        )
    # A bounce comes from a receipt in real life; the admin API cannot set a
    # reason, so the service adds it here as a receipt would.
    await env.hub.receipts.remove("acme", Channel.EMAIL, "bounced@example.com", by=Lifter.OPERATOR)
    await env.hub.receipts.add(
        "acme", Channel.EMAIL, "bounced@example.com", reason=SuppressionReason.HARD_BOUNCE
    )
    refused = await env.client.delete(
        "/v1/suppressions/email/ops%40example.com", headers=env.headers()
    )
    assert refused.status_code == 403
    assert refused.json()["reason"] == "operator"
    assert refused.json()["field"] == "address"
    lifted = await env.client.delete(
        "/v1/suppressions/email/Bounced%40Example.com", headers=env.headers()
    )
    assert lifted.status_code == 204
    gone = await env.client.delete(
        "/v1/suppressions/email/bounced%40example.com", headers=env.headers()
    )
    assert gone.status_code == 404
    by_operator = await env.client.delete(
        "/admin/v1/tenants/acme/suppressions/email/ops%40example.com", headers=env.admin()
    )
    assert by_operator.status_code == 204
    listed = await env.client.get("/v1/suppressions", headers=env.headers())
    assert listed.json()["items"] == []


async def test_a_plus_in_the_path_is_url_encoded(env: Env) -> None:
    await env.hub.receipts.add("acme", Channel.SMS, PHONE, reason=SuppressionReason.OPTED_OUT)
    answer = await env.client.delete(
        f"/v1/suppressions/sms/{quote(PHONE, safe='')}", headers=env.headers()
    )
    assert answer.status_code == 204, answer.text


async def test_tenants_never_see_each_others_lists(env: Env) -> None:
    await env.hub.receipts.add("acme", Channel.SMS, PHONE)
    mine = await env.client.get("/v1/suppressions", headers=env.headers())
    theirs = await env.client.get("/v1/suppressions", headers=env.headers("globex"))
    assert [s["address"] for s in mine.json()["items"]] == [PHONE]
    assert theirs.json()["items"] == []
    lift = await env.client.delete(
        f"/v1/suppressions/sms/{quote(PHONE, safe='')}", headers=env.headers("globex")
    )
    assert lift.status_code == 404
    # globex is not suppressed by acme's list.
    globex = {**env.headers("globex"), "X-Country": "US", "Idempotency-Key": "g-1"}
    sent = await env.client.post(
        "/v1/notifications", json={"recipient": {"phone": PHONE}, "body": "hi"}, headers=globex
    )
    assert sent.status_code == 202


async def test_the_list_pages_with_a_cursor_and_filters_by_channel(env: Env) -> None:
    for n in range(5):
        await env.hub.receipts.add("acme", Channel.SMS, f"+1500555000{n}")
    await env.hub.receipts.add("acme", Channel.EMAIL, "a@example.com")
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": "2", "channel": "sms", **({"cursor": cursor} if cursor else {})}
        page = (
            await env.client.get("/v1/suppressions", params=params, headers=env.headers())
        ).json()
        seen += [s["address"] for s in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"+1500555000{n}" for n in range(5)]
    bad = await env.client.get("/v1/suppressions", params={"cursor": "nope"}, headers=env.headers())
    assert bad.status_code == 422
    assert bad.json()["field"] == "cursor"
    every = await env.client.get("/admin/v1/tenants/acme/suppressions", headers=env.admin())
    assert len(every.json()["items"]) == 6


async def test_invalid_addresses_and_channels_are_field_errors(env: Env) -> None:
    bad_address = await env.client.post(
        "/admin/v1/tenants/acme/suppressions",
        json={"channel": "sms", "address": "600111222"},
        headers=env.admin(),
    )
    assert bad_address.status_code == 422
    assert bad_address.json()["field"] == "address"
    bad_note = await env.client.post(
        "/admin/v1/tenants/acme/suppressions",
        json={"channel": "sms", "address": PHONE, "note": "two\nlines"},
        headers=env.admin(),
    )
    assert bad_note.status_code == 422
    assert bad_note.json()["field"] == "note"
    bad_channel = await env.client.delete("/v1/suppressions/fax/x", headers=env.headers())
    assert bad_channel.status_code == 422
    assert bad_channel.json()["field"] == "channel"
    unknown = await env.client.post(
        "/admin/v1/tenants/nobody/suppressions",
        json={"channel": "sms", "address": PHONE},
        headers=env.admin(),
    )
    assert unknown.status_code == 404


async def test_listing_filters_by_delivery_state(env: Env) -> None:
    sent = await env.send("US", "twilio", "SM-list-1", phone=PHONE)
    queued = await env.submit("US", phone="+15005550002")
    assert queued.status_code == 202
    only_sent = await env.client.get(
        "/v1/notifications", params={"delivery_state": "sent"}, headers=env.headers()
    )
    assert only_sent.status_code == 200
    assert [n["id"] for n in only_sent.json()["items"]] == [sent]
    assert only_sent.json()["items"][0]["delivery_state"] == "sent"
    none_delivered = await env.client.get(
        "/v1/notifications", params={"delivery_state": "delivered"}, headers=env.headers()
    )
    assert none_delivered.json()["items"] == []
    everything = await env.client.get("/v1/notifications", headers=env.headers())
    states = {n["id"]: n["delivery_state"] for n in everything.json()["items"]}
    assert states == {sent: "sent", queued.json()["id"]: None}
    bogus = await env.client.get(
        "/v1/notifications", params={"delivery_state": "lost"}, headers=env.headers()
    )
    assert bogus.status_code == 422
    assert bogus.json()["field"] == "delivery_state"


async def test_expiry_ends_what_no_receipt_ended(env: Env) -> None:
    nid = await env.send("US", "twilio", "SM-exp-1", phone=PHONE)
    assert await env.hub.receipts.expire() == 0
    env.hub.receipts.policy = ReceiptPolicy(timeout=timedelta(0))
    assert await env.hub.receipts.expire() == 1
    view = await env.view(nid)
    assert view["delivery"]["state"] == "expired"
    assert view["delivery"]["events"][-1]["provider"] == "hub"


async def test_the_admin_view_of_a_notification_has_its_delivery(env: Env) -> None:
    nid = await env.send("US", "twilio", "SM-admin-1", phone=PHONE)
    view = await env.client.get(f"/admin/v1/tenants/acme/notifications/{nid}", headers=env.admin())
    assert view.status_code == 200
    assert view.json()["delivery"]["state"] == "sent"
