"""Bad input gets a clear problem+json naming the field: never a 500, never partial state."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from hubs import FAST, HubProcesses, payload, wait_terminal

PROBLEM = "application/problem+json"


def submit(
    client: httpx.Client,
    hub: HubProcesses,
    *,
    tenant: str = "acme",
    country: str | None = "ES",
    key: str | None = "fresh",
    body: Any = None,
    drop: tuple[str, ...] = (),
    **headers: str,
) -> httpx.Response:
    h = hub.headers(tenant)
    if country is not None:
        h["X-Country"] = country
    if key is not None:
        h["Idempotency-Key"] = str(uuid.uuid4()) if key == "fresh" else key
    for name in drop:
        h.pop(name, None)
    h.update({k.replace("_", "-"): v for k, v in headers.items()})
    if isinstance(body, bytes | str):
        return client.post(
            "/v1/notifications", content=body, headers={"Content-Type": "application/json", **h}
        )
    return client.post("/v1/notifications", json=payload("ES") if body is None else body, headers=h)


def assert_problem(resp: httpx.Response, status: int, field: str | None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == PROBLEM
    problem: dict[str, Any] = resp.json()
    assert {"type", "title", "status", "detail"} <= problem.keys()
    assert problem["status"] == status
    assert problem["type"].startswith("urn:integration-hub:problem:")
    if field is not None:
        assert problem["field"] == field
    return problem


def test_missing_x_tenant_is_400(hub: HubProcesses, client: httpx.Client) -> None:
    assert_problem(submit(client, hub, drop=("X-Tenant",)), 400, "X-Tenant")


def test_missing_x_country_is_400(hub: HubProcesses, client: httpx.Client) -> None:
    assert_problem(submit(client, hub, country=None), 400, "X-Country")


def test_missing_idempotency_key_is_400(hub: HubProcesses, client: httpx.Client) -> None:
    assert_problem(submit(client, hub, key=None), 400, "Idempotency-Key")


@pytest.mark.parametrize("key", ["x" * 256, "tab\there"])
def test_malformed_idempotency_key_is_400(
    hub: HubProcesses, client: httpx.Client, key: str
) -> None:
    assert_problem(submit(client, hub, key=key), 400, "Idempotency-Key")


def test_missing_api_key_is_401(hub: HubProcesses, client: httpx.Client) -> None:
    resp = submit(client, hub, drop=("Authorization",))
    assert_problem(resp, 401, None)
    assert resp.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "authorization",
    ["Bearer nonsense", "Bearer ihub_000000000000_forged", "Basic dXNlcjpwYXNz"],
)
def test_bad_api_key_is_401(hub: HubProcesses, client: httpx.Client, authorization: str) -> None:
    assert_problem(submit(client, hub, Authorization=authorization), 401, None)


def test_a_key_for_another_tenant_is_403(hub: HubProcesses, client: httpx.Client) -> None:
    resp = submit(client, hub, X_Tenant="globex")  # acme's key, globex named
    assert_problem(resp, 403, "X-Tenant")


def test_an_unsupported_country_is_422_listing_the_supported_ones(
    hub: HubProcesses, client: httpx.Client
) -> None:
    problem = assert_problem(submit(client, hub, country="JP"), 422, "X-Country")
    assert problem["supported_countries"] == sorted(
        ["ES", "FR", "IT", "GR", "MX", "AR", "CO", "US", "CA", "GB"]
    )


@pytest.mark.parametrize("country", ["ESP", "1", "E$"])
def test_a_malformed_country_is_422(hub: HubProcesses, client: httpx.Client, country: str) -> None:
    assert_problem(submit(client, hub, country=country), 422, "X-Country")


def test_an_email_country_without_an_email_is_422(hub: HubProcesses, client: httpx.Client) -> None:
    body = {"recipient": {"phone": "+34600111222"}, "body": "hi"}
    assert_problem(submit(client, hub, body=body), 422, "recipient.email")


def test_a_bad_e164_number_for_mexico_is_422(hub: HubProcesses, client: httpx.Client) -> None:
    body = {"recipient": {"phone": "55 1234 5678"}, "body": "hi"}
    problem = assert_problem(submit(client, hub, country="MX", body=body), 422, "recipient.phone")
    assert "E.164" in problem["detail"]


def test_whatsapp_without_a_phone_is_422(hub: HubProcesses, client: httpx.Client) -> None:
    body = {"recipient": {"email": "ana@example.com"}, "body": "hi"}
    assert_problem(submit(client, hub, country="MX", body=body), 422, "recipient.phone")


def test_a_body_over_the_limit_is_413(hub: HubProcesses, client: httpx.Client) -> None:
    body = payload("ES")
    body["body"] = "x" * (64 * 1024 + 1)
    assert_problem(submit(client, hub, body=body), 413, "body")


def test_a_chunked_body_over_the_limit_is_413(hub: HubProcesses, client: httpx.Client) -> None:
    def chunks() -> Any:
        yield b'{"recipient": {"email": "a@example.com"}, "body": "'
        for _ in range(70):
            yield b"x" * 1024
        yield b'"}'

    h = {
        **hub.headers("acme"),
        "X-Country": "ES",
        "Idempotency-Key": str(uuid.uuid4()),
        "Content-Type": "application/json",
    }
    resp = client.post("/v1/notifications", content=chunks(), headers=h)
    assert_problem(resp, 413, "body")


def test_malformed_json_is_400(hub: HubProcesses, client: httpx.Client) -> None:
    assert_problem(submit(client, hub, body=b'{"recipient": '), 400, "body")


def test_a_non_json_content_type_is_415(hub: HubProcesses, client: httpx.Client) -> None:
    h = {**hub.headers("acme"), "X-Country": "ES", "Idempotency-Key": str(uuid.uuid4())}
    resp = client.post("/v1/notifications", data={"body": "hi"}, headers=h)
    assert_problem(resp, 415, "Content-Type")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"recipient": {"email": "ana@example.com"}}, "body"),
        ({"recipient": {"email": "ana@example.com"}, "body": ""}, "body"),
        ({"recipient": {"email": "not-an-address"}, "body": "hi"}, "recipient.email"),
        ({"recipient": {"email": "ana@example.com"}, "body": "hi", "channel": "sms"}, "channel"),
        ({"recipient": {"email": "ana@example.com"}, "body": "hi", "metadata": [1]}, "metadata"),
        ({"recipient": "ana@example.com", "body": "hi"}, "recipient"),
        ([1, 2, 3], None),
    ],
)
def test_invalid_fields_are_422_naming_the_field(
    hub: HubProcesses, client: httpx.Client, body: Any, field: str | None
) -> None:
    problem = assert_problem(submit(client, hub, body=body), 422, field)
    assert problem["errors"]


CONTROLS = {"NUL": "\x00", "ESC": "\x1b", "DEL": "\x7f", "NEL": "\x85", "CSI": "\x9b"}
EMAIL_BODY = {"recipient": {"email": "ana@example.com"}, "subject": "Hi", "body": "hello"}


def _fill(value: Any, char: str) -> Any:
    """``value`` with every "{c}" in its strings and keys replaced by ``char``."""
    if isinstance(value, str):
        return value.replace("{c}", char)
    if isinstance(value, dict):
        return {_fill(k, char): _fill(v, char) for k, v in value.items()}
    return value


@pytest.mark.parametrize("char", CONTROLS.values(), ids=CONTROLS.keys())
@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"body": "hello {c} there"}, "body"),
        ({"recipient": {"email": "a{c}[31m@example.com"}}, "recipient.email"),
        ({"subject": "Hi {c}"}, "subject"),
        ({"metadata": {"order": {"note": "x{c}y"}}}, "metadata.order.note"),
        ({"metadata": {"order": {"k{c}": "v"}}}, "metadata.order"),
    ],
)
def test_a_control_character_is_422_naming_the_field(
    hub: HubProcesses, client: httpx.Client, changes: dict[str, Any], field: str, char: str
) -> None:
    """Before, a NUL was accepted (202) and, on PostgreSQL, failed every delivery attempt."""
    body = _fill({**EMAIL_BODY, **changes}, char)
    problem = assert_problem(submit(client, hub, body=body), 422, field)
    assert problem["type"].endswith("validation-error")


def test_tab_and_line_breaks_in_a_body_are_accepted_and_delivered(
    hub: HubProcesses, client: httpx.Client
) -> None:
    text = "Dear Ana,\r\n\tyour order shipped.\n\nBye"
    body = {**EMAIL_BODY, "body": text, "metadata": {"order": {"note": text}}}
    resp = submit(client, hub, body=body)
    assert resp.status_code == 202, resp.text
    view = wait_terminal(client, hub.headers("acme"), resp.json()["id"])
    assert view["status"] == "DONE", view
    assert view["metadata"] == {"order": {"note": text}}


ADMIN = {"Authorization": f"Bearer {FAST['IHUB_ADMIN_TOKEN']}"}


@pytest.mark.parametrize("country", ["0", "ESP", "É"])
def test_an_invalid_country_in_a_route_path_names_the_path_parameter(
    client: httpx.Client, country: str
) -> None:
    resp = client.put(
        f"/admin/v1/tenants/acme/routes/{country}", json={"channel": "sms"}, headers=ADMIN
    )
    # It was named "X-Country", a header this request does not have.
    assert_problem(resp, 422, "country")


def test_creating_a_tenant_that_exists_is_409_tenant_exists(client: httpx.Client) -> None:
    resp = client.post("/admin/v1/tenants", json={"tenant": "acme"}, headers=ADMIN)
    problem = assert_problem(resp, 409, None)
    assert problem["type"].endswith("tenant-exists")


def test_a_backoff_cap_below_its_base_is_422_naming_the_cap(client: httpx.Client) -> None:
    resp = client.patch(
        "/admin/v1/tenants/acme/limits",
        json={"backoff_base_seconds": 5, "backoff_cap_seconds": 1},
        headers=ADMIN,
    )
    assert_problem(resp, 422, "backoff_cap_seconds")


@pytest.mark.parametrize("field", ["max_attempts", "backoff_cap_seconds", "daily_quota"])
def test_true_is_no_number_in_limits(client: httpx.Client, field: str) -> None:
    # Python's bool is an int: it was taken as 1.
    resp = client.patch("/admin/v1/tenants/acme/limits", json={field: True}, headers=ADMIN)
    assert_problem(resp, 422, field)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"tenant": "New-Tenant"}, "tenant"),
        ({"tenant": "fine", "name": "a\x1b[31mname"}, "name"),
    ],
)
def test_a_new_tenant_is_refused_for_its_form(
    client: httpx.Client, body: dict[str, str], field: str
) -> None:
    assert_problem(client.post("/admin/v1/tenants", json=body, headers=ADMIN), 422, field)


def test_an_invalid_status_filter_is_422(hub: HubProcesses, client: httpx.Client) -> None:
    resp = client.get("/v1/notifications", params={"status": "LOST"}, headers=hub.headers("acme"))
    assert_problem(resp, 422, "status")


@pytest.mark.parametrize("params", [{"limit": "0"}, {"limit": "101"}, {"limit": "many"}])
def test_an_invalid_limit_is_422(
    hub: HubProcesses, client: httpx.Client, params: dict[str, str]
) -> None:
    resp = client.get("/v1/notifications", params=params, headers=hub.headers("acme"))
    assert_problem(resp, 422, "limit")


def test_a_forged_cursor_is_422(hub: HubProcesses, client: httpx.Client) -> None:
    resp = client.get("/v1/notifications", params={"cursor": "%%%"}, headers=hub.headers("acme"))
    assert_problem(resp, 422, "cursor")


def test_an_unknown_path_is_a_404_problem(client: httpx.Client) -> None:
    assert_problem(client.get("/v1/nothing-here"), 404, None)


def test_refused_requests_leave_no_state(hub: HubProcesses, client: httpx.Client) -> None:
    hub.create_tenant("strict")
    bad_bodies: list[Any] = [
        {"recipient": {"phone": "+34600111222"}, "body": "hi"},
        b"{",
        {"body": "x" * 70000},
        {"recipient": {}, "body": "hi"},
        "null",
        "[]",
        '""',
        {"recipient": {"email": "a@example.com", "phone": "12"}, "body": "hi"},
    ]
    for body in bad_bodies:
        resp = submit(client, hub, tenant="strict", body=body, key="same-key")
        assert 400 <= resp.status_code < 500, (body, resp.text)
    for country in ["JP", "u k", "GBR", "x"]:
        assert submit(client, hub, tenant="strict", country=country).status_code < 500
    listed = client.get("/v1/notifications", headers=hub.headers("strict")).json()
    assert listed["items"] == []
    # The key used by every refused request is still free for a valid one.
    ok = submit(client, hub, tenant="strict", key="same-key")
    assert ok.status_code == 202
    assert "Idempotent-Replayed" not in ok.headers


def test_the_openapi_document_describes_the_contract(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    post = spec["paths"]["/v1/notifications"]["post"]
    assert "202" in post["responses"]
    for status in ("400", "401", "403", "409", "413", "415", "422", "503"):
        assert "application/problem+json" in post["responses"][status]["content"], status
    headers = {p["name"] for p in post["parameters"] if p["in"] == "header"}
    assert {"x-tenant", "authorization", "x-country", "idempotency-key"} <= headers
    body_ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert body_ref.endswith("/NotificationRequest")
    listing = spec["paths"]["/v1/notifications"]["get"]
    assert {p["name"] for p in listing["parameters"]} >= {"status", "country", "limit", "cursor"}
    assert "/v1/notifications/{notification_id}" in spec["paths"]


def test_readyz_reports_the_store_and_queue_ready(client: httpx.Client) -> None:
    resp = client.get("/readyz")
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "ready"
    assert body["queue_visible"] >= 0
