"""The outbound rule end to end (issue 13): provider URLs refused when set and when
used, and a provider's raw answer kept from the tenant while operators can read it."""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hubs import FAST, HubProcesses, make_hub, payload, wait_terminal
from providers.fake_twilio import FakeTwilio
from reliability.harness import served

ADMIN = {"Authorization": f"Bearer {FAST['IHUB_ADMIN_TOKEN']}"}
LEAK = "INTERNAL-ONLY-DATA-42 db_password=hunter2-internal"


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    with served(FakeTwilio()) as fake:
        yield fake


@pytest.fixture
def hub(tmp_path: Path, backend_kind: str) -> Iterator[HubProcesses]:
    procs = make_hub(tmp_path, backend_kind)
    try:
        procs.create_tenant("smsco")
        assert procs.cli("tenants", "set-provider", "smsco", "sms", "twilio").returncode == 0
        procs.start_api()
        yield procs
    finally:
        procs.stop()


def send_headers(hub: HubProcesses) -> dict[str, str]:
    return hub.headers("smsco", X_Country="US", Idempotency_Key=str(uuid.uuid4()))


def twilio_settings(fake: FakeTwilio, **overrides: str) -> dict[str, str]:
    return fake.credentials(**overrides)


REFUSED_BASE_URLS = [
    "http://169.254.169.254/latest/meta-data",
    "https://[fd00:ec2::254]/",
    "https://10.0.0.7/",
    "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_INFO",
    "not a url",
    "https://user:pw@api.twilio.com/",
]


def test_internal_provider_urls_are_refused_when_set(hub: HubProcesses, twilio: FakeTwilio) -> None:
    with httpx.Client(base_url=hub.base_url, timeout=10) as client:
        for url in REFUSED_BASE_URLS:
            put = client.put(
                "/admin/v1/tenants/smsco/credentials/twilio",
                json=twilio_settings(twilio, base_url=url),
                headers=ADMIN,
            )
            assert put.status_code == 422, (url, put.text)
            assert put.headers["content-type"] == "application/problem+json"
            assert put.json()["field"] == "credentials.base_url", url
        callback = client.put(
            "/admin/v1/tenants/smsco/credentials/twilio",
            json=twilio_settings(twilio, status_callback="https://169.254.169.254/cb"),
            headers=ADMIN,
        )
        assert callback.status_code == 422
        assert callback.json()["field"] == "credentials.status_callback"
        smtp = client.put(
            "/admin/v1/tenants/smsco/credentials/smtp",
            json={"host": "169.254.169.254", "from_address": "a@example.com"},
            headers=ADMIN,
        )
        assert (smtp.status_code, smtp.json()["field"]) == (422, "credentials.host")
        configured = client.get("/admin/v1/tenants/smsco", headers=ADMIN).json()
        assert configured["configured_providers"] == []
    path = hub.workdir / "twilio.json"
    # The suite allows 127.0.0.0/8 for its fakes; the metadata range stays refused.
    path.write_text(
        json.dumps(twilio_settings(twilio, base_url="http://[::ffff:169.254.169.254]/"))
    )
    done = hub.cli("tenants", "set-credentials", "smsco", "twilio", "--from-file", str(path))
    assert done.returncode != 0
    assert "base_url" in done.stderr
    assert "link-local" in done.stderr


def test_a_provider_answer_is_shown_to_operators_never_to_the_tenant(
    hub: HubProcesses, twilio: FakeTwilio
) -> None:
    with httpx.Client(base_url=hub.base_url, timeout=10) as client:
        put = client.put(
            "/admin/v1/tenants/smsco/credentials/twilio",
            json=twilio_settings(twilio),
            headers=ADMIN,
        )
        assert put.status_code == 204, put.text
        hub.start_worker()
        twilio.queue_response(403, LEAK)
        sent = client.post("/v1/notifications", json=payload("US"), headers=send_headers(hub))
        assert sent.status_code == 202, sent.text
        notification_id = sent.json()["id"]

        tenant_view = wait_terminal(client, hub.headers("smsco"), notification_id)

        assert tenant_view["status"] == "FAILED"
        assert tenant_view["attempts"][0]["message"] == "twilio HTTP 403"
        assert "INTERNAL-ONLY-DATA" not in json.dumps(tenant_view)
        assert "provider_response" not in tenant_view["attempts"][0]
        operator = client.get(
            f"/admin/v1/tenants/smsco/notifications/{notification_id}", headers=ADMIN
        )
        assert operator.status_code == 200, operator.text
        assert LEAK in operator.json()["attempts"][0]["provider_response"]
        assert twilio.auth_token not in operator.text
        other = client.get(f"/admin/v1/tenants/smsco/notifications/{'0' * 26}", headers=ADMIN)
        assert other.status_code == 404


def test_stored_settings_the_rule_refuses_are_a_configuration_outcome_unsent(
    hub: HubProcesses, twilio: FakeTwilio
) -> None:
    with httpx.Client(base_url=hub.base_url, timeout=10) as client:
        put = client.put(
            "/admin/v1/tenants/smsco/credentials/twilio",
            json=twilio_settings(twilio),
            headers=ADMIN,
        )
        assert put.status_code == 204, put.text
        # The worker runs without the suite's exemptions, as in production:
        # settings stored under a wider rule (or before it) are not used.
        hub.env = {
            **hub.env,
            "IHUB_PROVIDER_ALLOWED_NETWORKS": "",
            "IHUB_PROVIDER_ALLOW_HTTP": "true",
        }
        worker = hub.start_worker()
        sent = client.post("/v1/notifications", json=payload("US"), headers=send_headers(hub))
        assert sent.status_code == 202, sent.text

        view = wait_terminal(client, hub.headers("smsco"), sent.json()["id"])

        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=20)
        assert view["status"] == "FAILED"
        attempt = view["attempts"][0]
        assert attempt["outcome"] == "configuration"
        assert "address 127.0.0.1 is loopback" in attempt["message"]
        assert "IHUB_PROVIDER_ALLOWED_NETWORKS" in attempt["message"]
        assert twilio.requests == []
