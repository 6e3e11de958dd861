"""Fixtures for traces and logs: the SDK with an in-memory exporter, real hubs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import pg
from aws.motoserver import MotoAws, start_moto
from integration_hub.bootstrap import Hub, build_hub
from integration_hub.entrypoints.api import create_app
from integration_hub.service.tenants import create_tenant
from observability.obs_support import Hubs, settings


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


def _app(hub: Hub) -> FastAPI:
    app = create_app(hub=hub)
    app.state.hub = hub  # no lifespan under ASGITransport
    return app
