"""Helpers of the trace and log tests: hubs over ASGI, payloads with secrets, span lookups."""

from __future__ import annotations

import base64
import os

import httpx
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from integration_hub.bootstrap import Hub
from integration_hub.config import Settings


def settings(database_url: str, **extra: object) -> Settings:
    """Fast settings for a hub on ``database_url``."""
    values: dict[str, object] = {
        "database_url": database_url,
        "backoff_base_seconds": 0.01,
        "backoff_cap_seconds": 0.02,
        "retention_interval_seconds": 0,
        "master_key": base64.b64encode(os.urandom(32)).decode(),
        **extra,
    }
    return Settings(**values)  # type: ignore[arg-type]


class Hubs:
    """An API hub and a separate worker hub on one database, as two processes would be."""

    def __init__(self, api: Hub, worker: Hub, client: httpx.AsyncClient, key: str) -> None:
        self.api = api
        self.worker = worker
        self.client = client
        self.key = key

    def headers(self, **extra: str) -> dict[str, str]:
        """Auth headers of tenant acme."""
        return {"Authorization": f"Bearer {self.key}", "X-Tenant": "acme", **extra}

    async def submit(
        self, country: str = "ES", *, fail: str | None = None, **headers: str
    ) -> httpx.Response:
        """POST a notification to a recipient that must never show up in a span or a log.

        ``fail`` (transient, permanent) makes the sandbox provider fail the first attempt.
        """
        return await self.client.post(
            "/v1/notifications",
            json=payload(country, fail),
            headers=self.headers(
                **{"Idempotency-Key": os.urandom(8).hex(), "X-Country": country, **headers}
            ),
        )

    async def work(self) -> list[str]:
        """Receive and dispatch what the worker hub's queue holds now; the results."""
        results = []
        for message in await self.worker.queue.receive(10, visibility_timeout=30):
            results.append(str(await self.worker.dispatcher.handle(message)))
        return results


def payload(country: str, fail: str | None = None) -> dict[str, object]:
    """A body for ``country``'s channel, with secrets a span or a log line must not show."""
    email = country in {"ES", "FR", "IT", "GR"}
    body: dict[str, object] = {
        "recipient": {"email": SECRET_EMAIL} if email else {"phone": SECRET_PHONE},
        "body": SECRET_BODY,
    }
    if email:
        body["subject"] = SECRET_SUBJECT
    if fail:
        body["metadata"] = {"sandbox": {"fail": fail, "times": 1}}
    return body


SECRET_EMAIL = "ana.secret@example.com"
SECRET_PHONE = "+5215598765432"
SECRET_BODY = "the body text nobody may log"
SECRET_SUBJECT = "the subject nobody may log"


def named(spans: InMemorySpanExporter, prefix: str) -> list[ReadableSpan]:
    """Finished spans whose name starts with ``prefix``, in the order they ended."""
    return [s for s in spans.get_finished_spans() if s.name.startswith(prefix)]


def only(spans: InMemorySpanExporter, prefix: str) -> ReadableSpan:
    """The one finished span named ``prefix``…"""
    found = named(spans, prefix)
    assert len(found) == 1, [s.name for s in spans.get_finished_spans()]
    return found[0]


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent else None
