"""One trace from the accepting request to the provider call, through real hubs."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from integration_hub.domain.status import Status
from integration_hub.service import redrive
from observability.obs_support import (
    SECRET_BODY,
    SECRET_EMAIL,
    SECRET_PHONE,
    SECRET_SUBJECT,
    Hubs,
    named,
    only,
    parent_id,
)


async def test_one_trace_covers_the_request_the_accept_the_attempt_and_the_provider_call(
    hubs: Hubs, spans: InMemorySpanExporter
) -> None:
    response = await hubs.submit("ES")
    assert response.status_code == 202
    assert await hubs.work() == ["done"]

    server = only(spans, "POST /v1/notifications")
    accept = only(spans, "ihub.accept")
    attempt = only(spans, "ihub.attempt")
    call = only(spans, "ihub.provider sandbox")
    trace_id = server.context.trace_id
    assert {s.context.trace_id for s in (server, accept, attempt, call)} == {trace_id}
    assert server.parent is None
    assert server.kind is SpanKind.SERVER
    assert parent_id(accept) == server.context.span_id
    assert parent_id(attempt) == accept.context.span_id
    assert attempt.kind is SpanKind.CONSUMER
    assert parent_id(call) == attempt.context.span_id
    assert call.kind is SpanKind.CLIENT
    assert server.attributes is not None
    assert call.attributes is not None
    assert server.attributes["http.route"] == "/v1/notifications"
    assert server.attributes["http.response.status_code"] == 202
    assert call.attributes["ihub.provider"] == "sandbox"
    assert call.attributes["ihub.channel"] == "email"
    assert call.attributes["ihub.country"] == "ES"
    assert call.attributes["ihub.outcome"] == "delivered"
    assert call.attributes["ihub.attempt"] == 1
    assert attempt.attributes is not None
    assert attempt.attributes["ihub.result"] == "done"

    # A GET is a span of its own, named after the route's template, not the id.
    got = await hubs.client.get(
        f"/v1/notifications/{response.json()['id']}", headers=hubs.headers()
    )
    assert got.status_code == 200
    read = only(spans, "GET /v1/notifications/{notification_id}")
    assert read.attributes is not None
    assert read.attributes["ihub.tenant"] == "acme"
    assert read.context.trace_id != trace_id

    # The worker hub found the context in the database, not in this process's memory.
    stored = await hubs.worker.store.get_notification("acme", response.json()["id"])
    assert stored is not None
    assert stored.traceparent is not None
    assert stored.traceparent.split("-")[1] == trace.format_trace_id(trace_id)
    assert stored.traceparent.split("-")[2] == trace.format_span_id(accept.context.span_id)


async def test_a_retried_notification_keeps_its_trace_and_numbers_its_attempts(
    hubs: Hubs, spans: InMemorySpanExporter
) -> None:
    assert (await hubs.submit("ES", fail="transient")).status_code == 202
    assert await hubs.work() == ["retry"]
    await _wait_for_work(hubs, "done")

    accept = only(spans, "ihub.accept")
    attempts = named(spans, "ihub.attempt")
    calls = named(spans, "ihub.provider")
    assert [a.attributes["ihub.attempt"] for a in attempts] == [1, 2]  # type: ignore[index]
    assert all(parent_id(a) == accept.context.span_id for a in attempts)
    assert {s.context.trace_id for s in (*attempts, *calls)} == {accept.context.trace_id}
    first, second = calls
    assert first.attributes is not None
    assert second.attributes is not None
    assert first.attributes["ihub.outcome"] == "transient"
    assert first.attributes["error.type"] == "sandbox_transient"
    assert not first.status.is_ok
    assert second.attributes["ihub.outcome"] == "delivered"


async def test_a_redriven_notification_is_attempted_again_in_its_original_trace(
    hubs: Hubs, spans: InMemorySpanExporter
) -> None:
    notification_id = (await hubs.submit("ES", fail="permanent")).json()["id"]
    assert await hubs.work() == ["failed"]
    with trace.get_tracer("operator").start_as_current_span("ihub dlq redrive") as operator:
        assert await redrive.redrive(hubs.api.store, hubs.api.queue, None, notification_id)
    await _wait_for_work(hubs, "done")

    accept = only(spans, "ihub.accept")
    attempts = named(spans, "ihub.attempt")
    assert len(attempts) == 2
    assert {a.context.trace_id for a in attempts} == {accept.context.trace_id}
    assert operator.get_span_context().trace_id != accept.context.trace_id
    n = await hubs.api.store.get_notification("acme", notification_id)
    assert n is not None
    assert n.status is Status.DONE


async def test_a_client_traceparent_becomes_the_parent_of_the_request_span(
    hubs: Hubs, spans: InMemorySpanExporter
) -> None:
    client_trace = "0af7651916cd43dd8448eb211c80319c"
    client_span = "b7ad6b7169203331"
    traceparent = f"00-{client_trace}-{client_span}-01"
    assert (await hubs.submit("ES", traceparent=traceparent)).status_code == 202
    assert await hubs.work() == ["done"]

    server = only(spans, "POST /v1/notifications")
    assert trace.format_trace_id(server.context.trace_id) == client_trace
    assert server.parent is not None
    assert trace.format_span_id(server.parent.span_id) == client_span
    assert trace.format_trace_id(only(spans, "ihub.provider").context.trace_id) == client_trace


async def test_no_span_carries_a_recipient_a_body_a_subject_or_a_key(
    hubs: Hubs, spans: InMemorySpanExporter
) -> None:
    assert (await hubs.submit("ES")).status_code == 202
    assert (await hubs.submit("MX")).status_code == 202  # whatsapp: a phone number
    bad = await hubs.client.post(
        "/v1/notifications",
        json={"recipient": {"phone": SECRET_PHONE}, "body": SECRET_BODY},
        headers=hubs.headers(**{"Idempotency-Key": "k-bad", "X-Country": "ES"}),
    )
    assert bad.status_code == 422  # ES routes to email: an error the span records
    assert sorted(await hubs.work()) == ["done", "done"]
    get = await hubs.client.get("/v1/notifications", headers=hubs.headers())
    assert get.status_code == 200

    finished = spans.get_finished_spans()
    assert len(named(spans, "ihub.provider")) == 2
    text = " ".join(_everything(s) for s in finished)
    for secret in (SECRET_EMAIL, SECRET_PHONE, SECRET_BODY, SECRET_SUBJECT, hubs.key):
        assert secret not in text
    assert "ihub.tenant" in text  # the check above looked at the attributes


async def _wait_for_work(hubs: Hubs, last: str, rounds: int = 200) -> None:
    """Dispatch until the worker reports ``last`` (retries come back after a backoff)."""
    import asyncio

    for _ in range(rounds):
        if last in await hubs.work():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the worker never reported {last!r}")


def _everything(span: ReadableSpan) -> str:
    """A span's name, attributes, events and links as text."""
    parts = [span.name, repr(dict(span.attributes or {}))]
    for event in span.events:
        parts += [event.name, repr(dict(event.attributes or {}))]
    parts += [repr(dict(link.attributes or {})) for link in span.links]
    parts.append(str(span.status.description))
    return " ".join(parts)
