"""Structured logs: bound context, trace ids and redaction, read back from real output."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from integration_hub import tracing
from integration_hub.domain.routing import Channel
from integration_hub.entrypoints import logs
from observability.obs_support import SECRET_BODY, SECRET_EMAIL, SECRET_PHONE, SECRET_SUBJECT, Hubs

Lines = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def configure() -> Iterator[Callable[..., io.StringIO]]:
    """``configure(**options)`` routes all logging to a fresh buffer; undone afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    installed: list[logging.Handler] = []

    def make(**options: Any) -> io.StringIO:
        buffer = io.StringIO()
        installed.append(logs.configure(stream=buffer, **{"fmt": "json", **options}))
        return buffer

    try:
        yield make
    finally:
        for handler in installed:
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
        structlog.reset_defaults()


@pytest.fixture
def lines(configure: Callable[..., io.StringIO]) -> Lines:
    """The hub's JSON log lines (not other libraries') down to DEBUG, recipients hashed."""
    buffer = configure(level="debug")
    return lambda: [
        line
        for line in map(json.loads, buffer.getvalue().splitlines())
        if line["logger"].startswith("integration_hub")
    ]


async def test_every_line_of_a_request_carries_its_request_id_tenant_and_notification(
    hubs: Hubs, lines: Lines
) -> None:
    response = await hubs.submit("ES", **{"X-Request-Id": "client-req-0001"})
    assert response.status_code == 202
    assert response.headers["X-Request-Id"] == "client-req-0001"
    accepted = [line for line in lines() if line["event"] == "notification accepted"]
    assert len(accepted) == 1
    line = accepted[0]
    assert line["request_id"] == "client-req-0001"
    assert line["tenant"] == "acme"
    assert line["notification_id"] == response.json()["id"]
    assert line["country"] == "ES"
    assert line["level"] == "debug"
    assert line["logger"].endswith("routes")
    assert "timestamp" in line


async def test_a_malformed_or_missing_request_id_is_replaced_by_one_of_ours(
    hubs: Hubs, lines: Lines
) -> None:
    bad = await hubs.submit("ES", **{"X-Request-Id": "has spaces and\tcontrol"})
    none = await hubs.submit("ES")
    ids = [bad.headers["X-Request-Id"], none.headers["X-Request-Id"]]
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert ids[0] != ids[1]
    assert [line["request_id"] for line in lines()] == ids
    # Errors answered before any route runs carry one too.
    refused = await hubs.client.post("/v1/notifications", json={})
    assert refused.status_code == 400
    assert len(refused.headers["X-Request-Id"]) == 32


async def test_an_attempt_logs_its_notification_attempt_provider_and_outcome(
    hubs: Hubs, lines: Lines
) -> None:
    notification_id = (await hubs.submit("MX", fail="transient")).json()["id"]
    assert await hubs.work() == ["retry"]
    dispatched = [line for line in lines() if line["event"].startswith("dispatched")]
    assert len(dispatched) == 1
    line = dispatched[0]
    assert line["event"] == "dispatched: retry"
    assert line["notification_id"] == notification_id
    assert line["tenant"] == "acme"
    assert line["country"] == "MX"
    assert line["channel"] == "whatsapp"
    assert line["attempt"] == 1
    assert line["provider"] == "sandbox"
    assert line["outcome"] == "transient"
    assert "request_id" not in line  # the worker's context, not the API's


async def test_lines_inside_a_span_name_its_trace_and_span(
    hubs: Hubs, lines: Lines, spans: InMemorySpanExporter
) -> None:
    await hubs.submit("ES")
    await hubs.work()
    by_event = {line["event"]: line for line in lines()}
    attempt = next(s for s in spans.get_finished_spans() if s.name == "ihub.attempt")
    accept = next(s for s in spans.get_finished_spans() if s.name == "ihub.accept")
    assert by_event["dispatched: done"]["trace_id"] == f"{attempt.context.trace_id:032x}"
    assert by_event["dispatched: done"]["span_id"] == f"{attempt.context.span_id:016x}"
    assert by_event["notification accepted"]["span_id"] == f"{accept.context.span_id:016x}"
    logging.getLogger("integration_hub.outside").warning("no span here")
    assert "trace_id" not in lines()[-1]


async def test_a_provider_error_naming_the_recipient_and_a_key_is_logged_without_them(
    hubs: Hubs, lines: Lines
) -> None:
    sandbox = await hubs.worker.providers.get("acme", Channel.EMAIL, "sandbox")

    async def leaky(message: Any) -> Any:
        raise RuntimeError(
            f"550 <{message.recipient.email}> refused; auth {hubs.key}; body {message.body}"
        )

    sandbox.send = leaky  # type: ignore[method-assign]
    await hubs.submit("ES")
    assert await hubs.work() == ["retry"]
    text = "\n".join(json.dumps(line) for line in lines())
    assert "provider sandbox raised" in text
    assert SECRET_EMAIL not in text
    assert hubs.key not in text
    assert logs.fingerprint("email", SECRET_EMAIL) in text
    assert hubs.key.split("_")[1] in text  # the key id stays: it names the key, not its secret


def test_stdlib_and_structlog_lines_are_redacted_alike(lines: Lines) -> None:
    key = "ihub_0123456789ab_S3cr3tS3cr3tS3cr3tS3cr3tS3cr3tS3cr3tS3cr3t"
    logging.getLogger("integration_hub.x").warning("to %s and %s", SECRET_EMAIL, SECRET_PHONE)
    structlog.get_logger("integration_hub.y").info(
        "provider settings",
        api_key=key,
        password="hunter2-password",
        auth_token="twilio-token-value",
        headers={"Authorization": "Bearer abc.def.ghi", "X-Tenant": "acme"},
        recipient={"email": SECRET_EMAIL, "phone": SECRET_PHONE},
        note=f"retry with {key} for {SECRET_EMAIL}",
    )
    first, second = lines()
    raw = json.dumps([first, second])
    for secret in (SECRET_EMAIL, SECRET_PHONE, key, "hunter2", "twilio-token", "abc.def.ghi"):
        assert secret not in raw
    email, phone = logs.fingerprint("email", SECRET_EMAIL), logs.fingerprint("phone", SECRET_PHONE)
    assert first["event"] == f"to {email} and {phone}"
    assert second["api_key"] == second["password"] == second["auth_token"] == "[redacted]"
    assert second["headers"] == {"Authorization": "[redacted]", "X-Tenant": "acme"}
    assert second["recipient"] == {"email": email, "phone": phone}
    assert second["note"] == f"retry with ihub_0123456789ab_[redacted] for {email}"


@pytest.mark.parametrize(
    ("mode", "shown"),
    [
        ("hash", logs.fingerprint("email", SECRET_EMAIL)),
        ("redact", "[email]"),
        ("plain", SECRET_EMAIL),
    ],
)
def test_ihub_log_recipients_chooses_how_addresses_appear(
    configure: Callable[..., io.StringIO], mode: str, shown: str
) -> None:
    buffer = configure(recipients=mode)
    key = "ihub_0123456789ab_S3cr3tS3cr3tS3cr3tS3cr3tS3cr3tS3cr3tS3cr3t"
    logging.getLogger("integration_hub.z").error("bounced: %s (key %s)", SECRET_EMAIL, key)
    line = json.loads(buffer.getvalue())
    assert line["event"] == f"bounced: {shown} (key ihub_0123456789ab_[redacted])"


def test_the_same_address_hashes_the_same_in_every_line_and_others_differ() -> None:
    assert logs.fingerprint("email", "Ana@Example.com") == logs.fingerprint(
        "email", "ana@example.com"
    )
    assert logs.fingerprint("email", "bob@example.com") != logs.fingerprint(
        "email", "ana@example.com"
    )


def test_a_terminal_gets_the_console_renderer_and_anything_else_json(
    configure: Callable[..., io.StringIO],
) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert not logs.wants_json("auto", Tty())
    assert logs.wants_json("auto", io.StringIO())
    assert logs.wants_json("json", Tty())
    assert not logs.wants_json("console", io.StringIO())
    buffer = configure(fmt="console")
    with tracing.log_scope(request_id="req-console-1"):
        logging.getLogger("integration_hub.c").warning("mail for %s", SECRET_EMAIL)
    out = buffer.getvalue()
    assert "mail for <email:" in out
    assert "request_id=req-console-1" in out
    assert SECRET_EMAIL not in out
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)


async def test_a_full_request_and_attempt_log_no_recipient_body_subject_or_key(
    hubs: Hubs, lines: Lines
) -> None:
    await hubs.submit("ES")
    await hubs.submit("MX")
    assert sorted(await hubs.work()) == ["done", "done"]
    found = lines()
    assert len(found) == 4
    text = json.dumps(found)
    for secret in (SECRET_EMAIL, SECRET_PHONE, SECRET_BODY, SECRET_SUBJECT, hubs.key):
        assert secret not in text
