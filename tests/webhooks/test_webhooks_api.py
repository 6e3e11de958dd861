"""/v1/webhooks and /admin/v1/tenants/{tenant}/webhooks over HTTP (ASGI) on SQLite and
PostgreSQL: every route, the tenant boundary, the outbound rule on URLs, the endpoint cap,
the secret shown once, rotation, deliveries and their retry, test events and replay."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from integration_hub.domain import webhooks as wh
from integration_hub.domain.webhooks import AttemptOutcome, AttemptResult, DisablePolicy
from webhooks.api_env import (  # postgres_url: a fixture
    URL,
    WebEnv,
    database_for,
    postgres_url,  # noqa: F401
    web_env,
)

PROBLEM = "application/problem+json"
NEVER_DISABLE = DisablePolicy(failing_seconds=1e12, consecutive_failures=10**9)


@pytest.fixture(params=["sqlite", "postgres"])
async def web(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[WebEnv]:
    """The default hub: https only, the default outbound rule."""
    async for env in web_env(database_for(request, tmp_path)):
        yield env


def assert_problem(answer: httpx.Response, status: int, field: str | None = None) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith(PROBLEM)
    if field is not None:
        assert answer.json()["field"] == field, answer.json()


async def sealed_of(env: WebEnv, endpoint_id: str) -> dict[str, str]:
    stored = await env.hub.webhook_store.get_endpoint("acme", endpoint_id)
    assert stored is not None
    return dict(stored.secrets)


async def opened_secrets(env: WebEnv, endpoint_id: str) -> wh.SigningSecrets:
    purpose = wh.sealing_purpose(endpoint_id)
    opened = await env.hub.credentials.unseal("acme", purpose, await sealed_of(env, endpoint_id))
    return wh.SigningSecrets.from_dict(opened)


async def fail_to_the_end(env: WebEnv, endpoint_id: str) -> str:
    """Fan out, then fail every scheduled attempt of the endpoint's one delivery: its id."""
    store = env.hub.webhook_store
    await store.fan_out()
    delivery_id = None
    for n in range(wh.MAX_ATTEMPTS):
        env.clock.advance(86400.0)
        [delivery] = await store.claim_deliveries(
            token=f"t{n}", lease_seconds=60, limit=10, per_endpoint=10
        )
        assert delivery.endpoint_id == endpoint_id
        delivery_id = delivery.id
        result = AttemptResult(
            AttemptOutcome.HTTP_ERROR, status_code=500, latency_ms=12.5, error="HTTP 500"
        )
        assert await store.finish_attempt(delivery, f"t{n}", result, policy=NEVER_DISABLE)
    assert delivery_id is not None
    return delivery_id


# -- create, read, list: the secret is shown once ------------------------------------------


async def test_create_shows_the_secret_once_and_nothing_else_ever_does(web: WebEnv) -> None:
    created = await web.create(description="orders", event_types=["notification.done"])
    secret = created["secret"]
    assert secret.startswith("whsec_")
    assert created["url"] == URL
    assert (created["description"], created["event_types"], created["enabled"]) == (
        "orders",
        ["notification.done"],
        True,
    )
    assert (await opened_secrets(web, created["id"])).current == secret
    sealed = await sealed_of(web, created["id"])
    assert secret not in str(sealed)
    shown = await web.client.get(f"/v1/webhooks/{created['id']}", headers=web.headers())
    listed = await web.client.get("/v1/webhooks", headers=web.headers())
    admin = await web.client.get("/admin/v1/tenants/acme/webhooks", headers=web.admin())
    for answer in (shown, listed, admin):
        assert answer.status_code == 200, answer.text
        assert "whsec_" not in answer.text
        assert "secret" not in answer.text
        for value in sealed.values():
            assert value not in answer.text
    assert shown.json() == {k: v for k, v in created.items() if k != "secret"}
    assert [e["id"] for e in listed.json()["items"]] == [created["id"]]


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/in",
        "https://127.0.0.1/in",
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.1/in",
        "https://[::1]/in",
        "https://[::ffff:10.0.0.1]/in",
        "https://localhost:8443/in",
        "https://2130706433/in",
        "ftp://hooks.example.com/in",
        "https://user:pw@hooks.example.com/in",
    ],
)
async def test_a_url_the_outbound_rule_refuses_is_a_422_naming_url(web: WebEnv, url: str) -> None:
    answer = await web.client.post("/v1/webhooks", json={"url": url}, headers=web.headers())
    assert_problem(answer, 422, "url")
    assert "secret" not in answer.text
    assert await web.hub.webhook_store.list_endpoints("acme") == []


async def test_plain_http_is_accepted_only_with_the_development_flag(tmp_path: Path) -> None:
    envs: AsyncGenerator[WebEnv, None] = web_env(
        f"sqlite:///{tmp_path / 'hub.db'}", webhooks_allow_http=True
    )
    env = await anext(envs)
    try:
        created = await env.create(url="http://hooks.example.com/in")
        assert created["url"] == "http://hooks.example.com/in"
        private = await env.client.post(
            "/v1/webhooks", json={"url": "http://10.0.0.1/in"}, headers=env.headers()
        )
        assert_problem(private, 422, "url")  # the flag opens the scheme, not the addresses
    finally:
        await envs.aclose()


async def test_an_unknown_event_type_is_a_422_naming_event_types(web: WebEnv) -> None:
    for types in (["notification.done", "order.paid"], ["webhook.test"], []):
        answer = await web.client.post(
            "/v1/webhooks", json={"url": URL, "event_types": types}, headers=web.headers()
        )
        assert_problem(answer, 422, "event_types")
    assert await web.hub.webhook_store.list_endpoints("acme") == []


async def test_the_51st_endpoint_is_a_409(web: WebEnv) -> None:
    for _ in range(wh.MAX_ENDPOINTS_PER_TENANT):
        await web.create()
    answer = await web.client.post("/v1/webhooks", json={"url": URL}, headers=web.headers())
    assert_problem(answer, 409)
    listed = await web.client.get("/v1/webhooks", headers=web.headers())
    assert len(listed.json()["items"]) == wh.MAX_ENDPOINTS_PER_TENANT
    await web.create("globex")  # another tenant's cap is its own


# -- the tenant boundary -------------------------------------------------------------------


async def test_another_tenants_endpoint_is_404_on_every_route(web: WebEnv) -> None:
    theirs = await web.create("globex")
    one = f"/v1/webhooks/{theirs['id']}"
    calls = [
        ("GET", one, None),
        ("PATCH", one, {"description": "mine"}),
        ("DELETE", one, None),
        ("POST", one + "/rotate-secret", None),
        ("GET", one + "/deliveries", None),
        ("POST", one + "/deliveries/dlv_0123/retry", None),
        ("POST", one + "/test", None),
        ("POST", one + "/replay?since=0", None),
    ]
    for method, path, body in calls:
        answer = await web.client.request(method, path, json=body, headers=web.headers())
        assert_problem(answer, 404, "endpoint_id")
    unknown = await web.client.get("/v1/webhooks/ep_nope", headers=web.headers())
    assert_problem(unknown, 404)
    mine = await web.client.get("/v1/webhooks", headers=web.headers())
    assert mine.json()["items"] == []
    still = await web.client.get(one, headers=web.headers("globex"))
    assert still.status_code == 200
    assert still.json()["description"] == ""
    assert await web.hub.webhook_store.list_events("globex") == []


async def test_without_a_key_the_routes_are_401(web: WebEnv) -> None:
    answer = await web.client.get("/v1/webhooks", headers={"X-Tenant": "acme"})
    assert_problem(answer, 401)


# -- update and delete ---------------------------------------------------------------------


async def test_patch_changes_what_is_sent_and_keeps_the_rest(web: WebEnv) -> None:
    created = await web.create(description="orders", event_types=["notification.failed"])
    path = f"/v1/webhooks/{created['id']}"
    web.clock.advance(5)
    changed = await web.client.patch(
        path, json={"url": "https://other.example.com/x"}, headers=web.headers()
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["url"], body["description"], body["event_types"]) == (
        "https://other.example.com/x",
        "orders",
        ["notification.failed"],
    )
    assert body["updated_at"] > created["updated_at"]
    every = await web.client.patch(path, json={"event_types": None}, headers=web.headers())
    assert every.json()["event_types"] is None
    shown = await web.client.get(path, headers=web.headers())
    assert shown.json() == every.json()


async def test_a_refused_patch_changes_nothing(web: WebEnv) -> None:
    created = await web.create()
    path = f"/v1/webhooks/{created['id']}"
    for body, field in [
        ({"description": "new", "url": "https://169.254.169.254/"}, "url"),
        ({"url": None}, "url"),
        ({"enabled": None}, "enabled"),
        ({"description": "two\nlines"}, "description"),
        ({"event_types": ["nope"]}, "event_types"),
        ({"secret": "whsec_AAAA"}, "secret"),
    ]:
        answer = await web.client.patch(path, json=body, headers=web.headers())
        assert_problem(answer, 422, field)
    shown = await web.client.get(path, headers=web.headers())
    assert shown.json() == {k: v for k, v in created.items() if k != "secret"}


async def test_disabling_then_enabling_again_is_a_fresh_start(web: WebEnv) -> None:
    created = await web.create()
    path = f"/v1/webhooks/{created['id']}"
    off = await web.client.patch(path, json={"enabled": False}, headers=web.headers())
    assert (off.json()["enabled"], off.json()["disabled_reason"]) == (False, "by_tenant")
    assert off.json()["disabled_at"] is not None
    on = await web.client.patch(path, json={"enabled": True}, headers=web.headers())
    body = on.json()
    assert (body["enabled"], body["disabled_reason"], body["disabled_at"]) == (True, None, None)
    assert (body["failing_since"], body["consecutive_failures"]) == (None, 0)


async def test_delete_removes_the_endpoint(web: WebEnv) -> None:
    created = await web.create()
    path = f"/v1/webhooks/{created['id']}"
    gone = await web.client.delete(path, headers=web.headers())
    assert gone.status_code == 204
    assert_problem(await web.client.get(path, headers=web.headers()), 404)
    assert_problem(await web.client.delete(path, headers=web.headers()), 404)


# -- rotation --------------------------------------------------------------------------------


async def test_rotation_answers_a_new_secret_once_and_the_old_one_signs_for_the_overlap(
    web: WebEnv,
) -> None:
    created = await web.create()
    path = f"/v1/webhooks/{created['id']}"
    rotated = await web.client.post(path + "/rotate-secret", headers=web.headers())
    assert rotated.status_code == 200, rotated.text
    body = rotated.json()
    assert body["secret"].startswith("whsec_")
    assert body["secret"] != created["secret"]
    assert body["previous_secret_valid_until"] is not None
    opened = await opened_secrets(web, created["id"])
    now = web.clock.now()
    overlap = web.hub.settings.webhooks_rotation_overlap_hours * 3600
    assert opened.previous_until == pytest.approx(now + overlap)
    assert opened.signing(now + 1) == [body["secret"], created["secret"]]
    assert opened.signing(now + overlap + 1) == [body["secret"]]
    shown = await web.client.get(path, headers=web.headers())
    assert "whsec_" not in shown.text


# -- test events, deliveries, retry ---------------------------------------------------------


async def test_a_test_event_becomes_one_pending_delivery_to_that_endpoint(web: WebEnv) -> None:
    mine = await web.create(event_types=["notification.done"])
    other = await web.create()
    sent = await web.client.post(f"/v1/webhooks/{mine['id']}/test", headers=web.headers())
    assert sent.status_code == 202, sent.text
    assert sent.json()["type"] == "webhook.test"
    await web.hub.webhook_store.fan_out()
    listed = await web.client.get(f"/v1/webhooks/{mine['id']}/deliveries", headers=web.headers())
    assert listed.status_code == 200, listed.text
    [delivery] = listed.json()["items"]
    assert (delivery["event_id"], delivery["event_type"], delivery["status"]) == (
        sent.json()["event_id"],
        "webhook.test",
        "pending",
    )
    assert delivery["attempts"] == []
    assert delivery["next_attempt_at"] is not None
    elsewhere = await web.client.get(
        f"/v1/webhooks/{other['id']}/deliveries", headers=web.headers()
    )
    assert elsewhere.json()["items"] == []


async def test_deliveries_show_every_attempt_and_a_finished_one_can_be_retried(
    web: WebEnv,
) -> None:
    created = await web.create()
    path = f"/v1/webhooks/{created['id']}"
    await web.client.post(path + "/test", headers=web.headers())
    delivery_id = await fail_to_the_end(web, created["id"])
    listed = await web.client.get(path + "/deliveries", headers=web.headers())
    [delivery] = listed.json()["items"]
    assert (delivery["id"], delivery["status"], delivery["next_attempt_at"]) == (
        delivery_id,
        "failed",
        None,
    )
    assert len(delivery["attempts"]) == wh.MAX_ATTEMPTS
    first = delivery["attempts"][0]
    assert (first["status_code"], first["latency_ms"], first["error"], first["outcome"]) == (
        500,
        12.5,
        "HTTP 500",
        "http_error",
    )
    again = await web.client.post(f"{path}/deliveries/{delivery_id}/retry", headers=web.headers())
    assert again.status_code == 202, again.text
    assert again.json()["status"] == "pending"
    assert len(again.json()["attempts"]) == wh.MAX_ATTEMPTS  # its history is kept
    pending = await web.client.post(f"{path}/deliveries/{delivery_id}/retry", headers=web.headers())
    assert_problem(pending, 409, "delivery_id")
    unknown = await web.client.post(f"{path}/deliveries/dlv_nope/retry", headers=web.headers())
    assert_problem(unknown, 404, "delivery_id")


async def test_deliveries_are_paged_newest_first(web: WebEnv) -> None:
    created = await web.create()
    path = f"/v1/webhooks/{created['id']}"
    sent = []
    for _ in range(3):
        web.clock.advance(1)
        answer = await web.client.post(path + "/test", headers=web.headers())
        sent.append(answer.json()["event_id"])
        await web.hub.webhook_store.fan_out()
    first = await web.client.get(path + "/deliveries?limit=2", headers=web.headers())
    page = first.json()
    assert [d["event_id"] for d in page["items"]] == [sent[2], sent[1]]
    assert page["next_cursor"] is not None
    rest = await web.client.get(
        path + "/deliveries",
        params={"limit": 2, "cursor": page["next_cursor"]},
        headers=web.headers(),
    )
    assert [d["event_id"] for d in rest.json()["items"]] == [sent[0]]
    assert rest.json()["next_cursor"] is None
    bad = await web.client.get(path + "/deliveries?cursor=abc", headers=web.headers())
    assert_problem(bad, 422, "cursor")


async def test_a_disabled_endpoint_gets_no_test_and_no_replay(web: WebEnv) -> None:
    created = await web.create(enabled=False)
    path = f"/v1/webhooks/{created['id']}"
    assert_problem(await web.client.post(path + "/test", headers=web.headers()), 409, "enabled")
    replay = await web.client.post(path + "/replay?since=0", headers=web.headers())
    assert_problem(replay, 409, "enabled")
    assert await web.hub.webhook_store.list_events("acme") == []


# -- replay ------------------------------------------------------------------------------------


async def test_replay_sends_the_events_since_a_time_again(web: WebEnv) -> None:
    created = await web.create(event_types=["notification.accepted"])
    path = f"/v1/webhooks/{created['id']}"
    since = web.clock.now()
    await web.submit()
    web.clock.advance(10)
    await web.submit()
    for start in (repr(since), "1970-01-01T00:00:00Z"):
        answer = await web.client.post(
            f"{path}/replay", params={"since": start}, headers=web.headers()
        )
        assert answer.status_code == 202, answer.text
        assert answer.json() == {"replayed": 2}
    later = await web.client.post(
        f"{path}/replay", params={"since": repr(since + 5)}, headers=web.headers()
    )
    assert later.json() == {"replayed": 1}


@pytest.mark.parametrize("since", ["yesterday", "2026-01-01", "2026-01-01T00:00:00", "-1", ""])
async def test_replay_since_neither_rfc_3339_nor_unix_seconds_is_a_422_naming_since(
    web: WebEnv, since: str
) -> None:
    created = await web.create()
    answer = await web.client.post(
        f"/v1/webhooks/{created['id']}/replay", params={"since": since}, headers=web.headers()
    )
    assert_problem(answer, 422, "since")


async def test_replay_without_since_is_a_422_naming_since(web: WebEnv) -> None:
    created = await web.create()
    answer = await web.client.post(f"/v1/webhooks/{created['id']}/replay", headers=web.headers())
    assert_problem(answer, 422, "since")


async def test_replay_of_unknown_types_is_a_422_naming_types(web: WebEnv) -> None:
    created = await web.create()
    answer = await web.client.post(
        f"/v1/webhooks/{created['id']}/replay",
        params={"since": "0", "types": ["notification.done", "nope"]},
        headers=web.headers(),
    )
    assert_problem(answer, 422, "types")


# -- the admin API -----------------------------------------------------------------------------


async def test_the_operator_manages_any_tenants_endpoints(web: WebEnv) -> None:
    base = "/admin/v1/tenants/globex/webhooks"
    created = await web.client.post(base, json={"url": URL}, headers=web.admin())
    assert created.status_code == 201, created.text
    endpoint: dict[str, Any] = created.json()
    assert endpoint["secret"].startswith("whsec_")
    one = f"{base}/{endpoint['id']}"
    seen_by_tenant = await web.client.get(
        f"/v1/webhooks/{endpoint['id']}", headers=web.headers("globex")
    )
    assert seen_by_tenant.status_code == 200
    for method, path, body, status in [
        ("GET", base, None, 200),
        ("GET", one, None, 200),
        ("PATCH", one, {"description": "by the operator"}, 200),
        ("POST", one + "/rotate-secret", None, 200),
        ("POST", one + "/test", None, 202),
        ("GET", one + "/deliveries", None, 200),
        ("POST", one + "/replay?since=0", None, 202),
        ("POST", one + "/deliveries/dlv_nope/retry", None, 404),
        ("DELETE", one, None, 204),
        ("GET", one, None, 404),
    ]:
        answer = await web.client.request(method, path, json=body, headers=web.admin())
        assert answer.status_code == status, (method, path, answer.text)
    wrong_tenant = f"/admin/v1/tenants/acme/webhooks/{endpoint['id']}"
    assert_problem(await web.client.get(wrong_tenant, headers=web.admin()), 404)
    no_tenant = await web.client.get("/admin/v1/tenants/nobody/webhooks", headers=web.admin())
    assert_problem(no_tenant, 404)
    no_token = await web.client.get(base, headers=web.headers("globex"))
    assert_problem(no_token, 401)
