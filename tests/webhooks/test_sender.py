"""The webhook sender over real HTTP: signatures checked by ``standardwebhooks``,
every outcome a result, and the outbound rule refusing internal addresses before
anything connects."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from email.utils import formatdate
from typing import Any

import aiohttp
import pytest

from integration_hub.adapters.webhooks import AiohttpWebhookTransport
from integration_hub.adapters.webhooks.sender import EXCERPT_BYTES, MAX_RESPONSE_BYTES
from integration_hub.bootstrap import webhook_outbound_policy
from integration_hub.config import Settings
from integration_hub.domain import webhooks
from integration_hub.domain.outbound import OutboundPolicy
from integration_hub.domain.webhooks import AttemptOutcome
from providers.fake_dns import dns
from providers.fake_http import unused_port
from webhooks.receiver import WebhookReceiver

SECRET = webhooks.new_secret()
LOCAL = OutboundPolicy.of(["127.0.0.0/8", "::1/128"], allow_http=True)


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver(SECRET) as server:
        yield server


def signed(
    body: bytes = b'{"type":"webhook.test"}', secrets: list[str] | None = None
) -> dict[str, str]:
    return webhooks.sign(secrets or [SECRET], webhooks.new_event_id(), int(time.time()), body)


async def send(
    url: str, *, policy: OutboundPolicy = LOCAL, seconds: float = 5.0, body: bytes | None = None
) -> webhooks.AttemptResult:
    transport = AiohttpWebhookTransport(policy, timeout_seconds=seconds)
    payload = body or b'{"type":"webhook.test"}'
    try:
        return await transport.send(url, signed(payload), payload)
    finally:
        await transport.close()


async def test_a_signed_request_verifies_with_the_official_library(
    receiver: WebhookReceiver,
) -> None:
    body = webhooks.encode_body(
        webhooks.EventType.DONE, time.time(), {"id": "n1", "status": "DONE"}
    )
    headers = signed(body)
    transport = AiohttpWebhookTransport(LOCAL)
    try:
        result = await transport.send(receiver.base_url + "/hooks", headers, body)
    finally:
        await transport.close()
    assert result.outcome is AttemptOutcome.SUCCESS
    assert result.status_code == 200
    assert result.latency_ms > 0
    assert [v.webhook_id for v in receiver.verified] == [headers["webhook-id"]]
    assert receiver.verified[0].payload["data"] == {"id": "n1", "status": "DONE"}
    request = receiver.requests[0]
    assert request.method == "POST"
    assert request.headers["Content-Type"] == "application/json"
    assert request.body == body


async def test_a_rotation_signs_twice_and_either_secret_verifies(
    receiver: WebhookReceiver,
) -> None:
    new = webhooks.new_secret()
    body = b'{"type":"webhook.test"}'
    headers = webhooks.sign([new, SECRET], "msg_rot", int(time.time()), body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    transport = AiohttpWebhookTransport(LOCAL)
    try:
        first = await transport.send(receiver.base_url, headers, body)
        receiver.secrets = [new]
        second = await transport.send(receiver.base_url, headers, body)
        only_old = webhooks.sign([SECRET], "msg_old", int(time.time()), body)
        third = await transport.send(receiver.base_url, only_old, body)
    finally:
        await transport.close()
    assert (first.outcome, second.outcome) == (AttemptOutcome.SUCCESS, AttemptOutcome.SUCCESS)
    assert third.outcome is AttemptOutcome.HTTP_ERROR
    assert third.status_code == 400
    assert len(receiver.rejected) == 1


async def test_a_server_error_is_an_http_error_with_an_excerpt(receiver: WebhookReceiver) -> None:
    receiver.queue_response(500, "x" * 5000)
    result = await send(receiver.base_url)
    assert result.outcome is AttemptOutcome.HTTP_ERROR
    assert result.status_code == 500
    assert result.error == "HTTP 500"
    assert result.response_excerpt is not None
    assert len(result.response_excerpt) == EXCERPT_BYTES
    assert result.retry_after_seconds is None


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_is_read_on_429_and_503(receiver: WebhookReceiver, status: int) -> None:
    receiver.queue_response(status, "slow down", headers={"Retry-After": "7"})
    result = await send(receiver.base_url)
    assert (result.outcome, result.status_code, result.retry_after_seconds) == (
        AttemptOutcome.HTTP_ERROR,
        status,
        7.0,
    )


async def test_retry_after_as_an_http_date(receiver: WebhookReceiver) -> None:
    receiver.queue_response(
        503, "", headers={"Retry-After": formatdate(time.time() + 120, usegmt=True)}
    )
    result = await send(receiver.base_url)
    assert result.retry_after_seconds is not None
    assert 100 < result.retry_after_seconds <= 121


async def test_retry_after_is_ignored_on_other_statuses(receiver: WebhookReceiver) -> None:
    receiver.queue_response(500, "", headers={"Retry-After": "7"})
    assert (await send(receiver.base_url)).retry_after_seconds is None


async def test_410_is_gone(receiver: WebhookReceiver) -> None:
    receiver.queue_response(410, "gone")
    result = await send(receiver.base_url)
    assert (result.outcome, result.status_code) == (AttemptOutcome.GONE, 410)


async def test_a_redirect_is_not_followed(receiver: WebhookReceiver) -> None:
    receiver.queue_response(302, "", headers={"Location": receiver.base_url + "/elsewhere"})
    result = await send(receiver.base_url + "/hooks")
    assert (result.outcome, result.status_code) == (AttemptOutcome.HTTP_ERROR, 302)
    assert [r.path for r in receiver.requests] == ["/hooks"]


async def test_a_slow_endpoint_times_out(receiver: WebhookReceiver) -> None:
    receiver.queue_delay(10.0)
    started = time.monotonic()
    result = await send(receiver.base_url, seconds=0.5)
    assert result.outcome is AttemptOutcome.TIMEOUT
    assert time.monotonic() - started < 5.0
    assert result.status_code is None
    assert "0.5 s" in (result.error or "")


async def test_a_closed_port_is_a_connection_error() -> None:
    result = await send(f"http://127.0.0.1:{unused_port()}/hooks")
    assert result.outcome is AttemptOutcome.CONNECTION_ERROR
    assert result.error


async def test_at_most_64_kib_of_a_response_is_read(receiver: WebhookReceiver) -> None:
    # 1 MiB announced, and the body never ends: the sender stops after 64 KiB
    # instead of waiting for the rest (the request would otherwise time out).
    receiver.stream_then_hang(1024 * 1024, hang_seconds=30.0)
    started = time.monotonic()
    result = await send(receiver.base_url, seconds=10.0)
    assert result.outcome is AttemptOutcome.SUCCESS
    assert time.monotonic() - started < 5.0
    assert result.response_excerpt is not None
    assert len(result.response_excerpt) == EXCERPT_BYTES
    assert MAX_RESPONSE_BYTES == 64 * 1024


# -- the outbound rule --------------------------------------------------------------


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every connection aiohttp begins (none for a refused URL)."""
    seen: list[Any] = []
    original = aiohttp.TCPConnector._create_connection

    async def spy(self: aiohttp.TCPConnector, req: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(req.url)
        return await original(self, req, *args, **kwargs)

    monkeypatch.setattr(aiohttp.TCPConnector, "_create_connection", spy)
    return seen


STRICT = webhook_outbound_policy(Settings())
DEV = OutboundPolicy.of([], allow_http=True, setting="IHUB_WEBHOOKS_ALLOWED_NETWORKS")


@pytest.mark.parametrize(
    ("url", "policy", "named"),
    [
        ("https://169.254.169.254/latest/meta-data/", STRICT, "link-local"),
        ("https://10.0.0.1/hooks", STRICT, "private"),
        ("https://[::1]/hooks", STRICT, "loopback"),
        ("https://[::ffff:127.0.0.1]/hooks", STRICT, "loopback"),
        ("https://127.0.0.1/hooks", STRICT, "loopback"),
        ("https://localhost/hooks", STRICT, "loopback"),
        ("http://hooks.example.com/hooks", STRICT, "IHUB_WEBHOOKS_ALLOW_HTTP"),
    ],
)
async def test_refused_urls_are_blocked_before_connecting(
    connects: list[Any], url: str, policy: OutboundPolicy, named: str
) -> None:
    result = await send(url, policy=policy)
    assert result.outcome is AttemptOutcome.BLOCKED
    assert named in (result.error or "")
    assert result.status_code is None
    assert connects == []


async def test_an_internal_address_names_the_webhook_setting() -> None:
    result = await send("https://10.1.2.3/", policy=STRICT)
    assert "IHUB_WEBHOOKS_ALLOWED_NETWORKS" in (result.error or "")
    assert "IHUB_PROVIDER" not in (result.error or "")


async def test_a_name_resolving_to_loopback_is_blocked_at_send_time(
    receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The URL itself is acceptable (a public-looking name); what it resolves to
    # when the request is sent is not, so nothing reaches the receiver.
    dns(monkeypatch, {"hooks.example.com": ["127.0.0.1"]})
    result = await send(f"http://hooks.example.com:{receiver.port}/hooks", policy=DEV)
    assert result.outcome is AttemptOutcome.BLOCKED
    assert "loopback" in (result.error or "")
    assert receiver.requests == []


async def test_a_name_rebound_to_loopback_after_a_good_answer_is_blocked(
    receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = {"hooks.example.com": ["93.184.215.14"]}
    dns(monkeypatch, answers)
    url = f"http://hooks.example.com:{receiver.port}/hooks"
    assert DEV.check_url(url)  # accepted when configured
    answers["hooks.example.com"] = ["127.0.0.1"]  # rebound before the send
    result = await send(url, policy=DEV)
    assert result.outcome is AttemptOutcome.BLOCKED
    assert receiver.requests == []


async def test_plain_http_needs_the_flag(receiver: WebhookReceiver) -> None:
    policy = OutboundPolicy.of(
        ["127.0.0.0/8"],
        setting="IHUB_WEBHOOKS_ALLOWED_NETWORKS",
        http_setting="IHUB_WEBHOOKS_ALLOW_HTTP",
    )
    result = await send(receiver.base_url, policy=policy)
    assert result.outcome is AttemptOutcome.BLOCKED
    assert "IHUB_WEBHOOKS_ALLOW_HTTP" in (result.error or "")
    assert receiver.requests == []


async def test_allowed_networks_open_the_local_receiver(receiver: WebhookReceiver) -> None:
    settings = Settings(webhooks_allowed_networks="127.0.0.0/8", webhooks_allow_http=True)
    result = await send(receiver.base_url, policy=webhook_outbound_policy(settings))
    assert result.outcome is AttemptOutcome.SUCCESS
    assert len(receiver.verified) == 1
