"""Fixtures for traces and logs: the SDK with an in-memory exporter, real hubs."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import pg
from aws.motoserver import MotoAws, start_moto
from integration_hub.bootstrap import Hub, build_hub
from integration_hub.config import Settings
from integration_hub.entrypoints.api import create_app
from integration_hub.service.tenants import create_tenant


class Gate(SpanProcessor):
    """Passes spans on only while a test of this directory is running.

    The global tracer provider can be set once per process; other suites in
    the same session then run with the SDK too, and their spans must not pile up.
    """

    def __init__(self, inner: SpanProcessor) -> None:
        self.inner = inner
        self.open = False

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if self.open:
            self.inner.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        if self.open:
            self.inner.on_end(span)

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


_installed: dict[str, object] = {}


def _sdk() -> tuple[InMemorySpanExporter, Gate]:
    if not _installed:
        exporter = InMemorySpanExporter()
        gate = Gate(SimpleSpanProcessor(exporter))
        provider = TracerProvider()
        provider.add_span_processor(gate)
        trace.set_tracer_provider(provider)
        _installed.update(exporter=exporter, gate=gate)
    return _installed["exporter"], _installed["gate"]  # type: ignore[return-value]


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Every span finished during the test, in memory."""
    exporter, gate = _sdk()
    exporter.clear()
    gate.open = True
    try:
        yield exporter
    finally:
        gate.open = False
        exporter.clear()


@pytest.fixture(scope="session")
def moto_aws() -> Iterator[MotoAws]:
    """One moto server for this directory's tests."""
    yield from start_moto()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh SQLite file or a throwaway PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hub.db'}"
        return
    url = pg.create_database()
    try:
        yield url
    finally:
        pg.drop_database(url)


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


@pytest.fixture
async def hubs(database_url: str) -> AsyncIterator[Hubs]:
    """Two hubs on one database: the API's (over ASGI) and the worker's."""
    s = settings(database_url)
    api = await build_hub(s)
    worker = await build_hub(s)
    key = (await create_tenant(api.store, api.clock, "acme")).api_key
    transport = httpx.ASGITransport(app=_app(api))
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
        try:
            yield Hubs(api, worker, client, key)
        finally:
            await worker.close()
            await api.close()


def _app(hub: Hub) -> object:
    app = create_app(hub=hub)
    app.state.hub = hub  # no lifespan under ASGITransport
    return app
