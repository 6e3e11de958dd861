"""Real processes: `ihub api` and `ihub worker` exporting to an OTLP collector, their
logs as JSON lines, and the no-op default that never loads the SDK."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from hubs import BACKENDS, HubProcesses, make_hub, wait_terminal
from observability.obs_collector import Collector, collector
from observability.obs_support import SECRET_EMAIL, SECRET_PHONE, payload

pytestmark = [pytest.mark.acceptance, pytest.mark.timeout(180)]


def _started(workdir: Path, backend: str, **env: str) -> HubProcesses:
    procs = make_hub(workdir, backend, IHUB_LOG_LEVEL="info", **env)
    procs.env.pop("IHUB_LOG_FORMAT", None)  # the default: JSON, as stdout is a file
    procs.create_tenant("acme")
    procs.start_api()
    procs.start_worker()
    return procs


def server_trace(found: Collector) -> str:
    """The trace id of the one request span received."""
    (server,) = found.named("POST /v1/notifications")
    return server.trace_id


def _wait_for(found: Collector, names: list[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not all(found.named(n) for n in names):
        assert time.monotonic() < deadline, f"never exported: {names}; got {found.spans}"
        time.sleep(0.1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_api_process_and_a_worker_process_export_one_trace_per_notification(
    tmp_path: Path, backend: str
) -> None:
    with collector() as found:
        procs = _started(
            tmp_path,
            backend,
            OTEL_EXPORTER_OTLP_ENDPOINT=found.endpoint,
            OTEL_BSP_SCHEDULE_DELAY="100",
            OTEL_SERVICE_NAME="ihub-test",
        )
        try:
            with httpx.Client(base_url=procs.base_url, timeout=10) as client:
                headers = procs.headers("acme", X_Country="MX", Idempotency_Key="k-otlp-1")
                accepted = client.post("/v1/notifications", json=payload("MX"), headers=headers)
                assert accepted.status_code == 202, accepted.text
                view = wait_terminal(client, procs.headers("acme"), accepted.json()["id"])
                assert view["status"] == "DONE"
            # The operator's way from a notification to its trace.
            shown = procs.cli("status", accepted.json()["id"])
            assert shown.returncode == 0, shown.stderr
            _wait_for(found, ["POST /v1/notifications", "ihub.accept", "ihub.provider"])
        finally:
            procs.stop()

    assert f"trace id: {server_trace(found)}" in shown.stdout
    (server,) = found.named("POST /v1/notifications")
    (accept,) = found.named("ihub.accept")
    (attempt,) = found.named("ihub.attempt")
    (call,) = found.named("ihub.provider")
    assert {s.trace_id for s in (server, accept, attempt, call)} == {server.trace_id}
    assert attempt.parent_span_id == accept.span_id
    assert call.parent_span_id == attempt.span_id
    assert server.resource["ihub.role"] == "api"
    assert attempt.resource["ihub.role"] == "worker"
    assert server.resource["service.name"] == "ihub-test"
    assert call.attributes["ihub.outcome"] == "delivered"
    assert server.attributes["ihub.request_id"] == accepted.headers["X-Request-Id"]
    text = json.dumps([s.attributes for s in found.spans])
    assert SECRET_PHONE not in text


def test_the_processes_log_json_lines_with_their_context_and_no_recipient(
    tmp_path: Path,
) -> None:
    procs = _started(tmp_path, "sqlite")
    try:
        with httpx.Client(base_url=procs.base_url, timeout=10) as client:
            headers = procs.headers(
                "acme", X_Country="ES", Idempotency_Key="k-logs-1", X_Request_Id="trace-me-0001"
            )
            body = payload("ES", fail="transient")  # the first attempt is retried
            accepted = client.post("/v1/notifications", json=body, headers=headers)
            assert accepted.status_code == 202, accepted.text
            assert accepted.headers["X-Request-Id"] == "trace-me-0001"
            notification_id = accepted.json()["id"]
            assert wait_terminal(client, procs.headers("acme"), notification_id)["status"] == "DONE"
    finally:
        procs.stop()

    api = [json.loads(line) for line in (tmp_path / "api.log").read_text().splitlines()]
    worker = [json.loads(line) for line in (tmp_path / "worker.log").read_text().splitlines()]
    mine = [line for line in api if line.get("request_id") == "trace-me-0001"]
    access = [line for line in mine if line["logger"] == "uvicorn.access"]
    assert len(access) == 1
    assert access[0]["status"] == 202
    assert access[0]["method"] == "POST"
    assert access[0]["tenant"] == "acme"
    assert access[0]["notification_id"] == notification_id
    # At INFO the worker logs what did not end DONE at once: here the retry.
    (retry,) = [line for line in worker if line.get("notification_id") == notification_id]
    assert retry["event"] == "dispatched: retry"
    assert (retry["attempt"], retry["provider"], retry["outcome"]) == (1, "sandbox", "transient")
    assert retry["level"] == "info"
    assert retry["logger"] == "integration_hub.service.dispatch"
    everything = procs.logs()
    assert SECRET_EMAIL not in everything
    assert procs.keys["acme"] not in everything


def test_without_an_otlp_endpoint_the_sdk_is_never_imported(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        import httpx
        from opentelemetry import trace
        from integration_hub.bootstrap import build_hub
        from integration_hub.config import Settings
        from integration_hub.entrypoints.api import create_app
        from integration_hub.entrypoints.observability import setup
        from integration_hub.service.tenants import create_tenant

        TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

        async def main():
            settings = Settings(database_url="sqlite:///{tmp_path / "noop.db"}")
            observability = setup(settings, "serve")
            hub = await build_hub(settings)
            key = (await create_tenant(hub.store, hub.clock, "acme")).api_key
            app = create_app(hub=hub)
            app.state.hub = hub
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://hub") as c:
                r = await c.post(
                    "/v1/notifications",
                    json={{"recipient": {{"email": "a@example.com"}}, "body": "hi"}},
                    headers={{"Authorization": "Bearer " + key, "X-Tenant": "acme",
                             "X-Country": "ES", "Idempotency-Key": "k1",
                             "traceparent": TRACEPARENT}},
                )
                assert r.status_code == 202, r.text
            for m in await hub.queue.receive(10, visibility_timeout=30):
                assert str(await hub.dispatcher.handle(m)) == "done"
            n = await hub.store.get_notification("acme", r.json()["id"])
            await hub.close()
            loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry.sdk"))
            print(observability.provider, type(trace.get_tracer_provider()).__name__,
                  n.traceparent, loaded)

        asyncio.run(main())
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["IHUB_LOG_LEVEL"] = "warning"
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["None", "ProxyTracerProvider", "None", "[]"]


def test_an_otlp_endpoint_without_the_otel_extra_names_the_extra_to_install(
    tmp_path: Path,
) -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["opentelemetry.sdk"] = None  # as if the otel extra were not installed
        from integration_hub.bootstrap import ConfigurationError
        from integration_hub.config import Settings
        from integration_hub.entrypoints.observability import setup
        try:
            setup(Settings(), "api")
        except ConfigurationError as exc:
            print(exc)
        """
    )
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'integration-hub[otel]'" in done.stdout


@pytest.mark.parametrize(
    ("environ", "wanted"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, False),
    ],
)
def test_tracing_is_on_only_with_an_endpoint_and_not_disabled(
    environ: dict[str, str], wanted: bool
) -> None:
    from integration_hub.entrypoints.observability import tracing_wanted

    assert tracing_wanted(environ) is wanted
