"""/metrics of real processes: an API and workers, scraped over HTTP and parsed.

Without PROMETHEUS_MULTIPROC_DIR each process exposes what it counted itself
(the API: acceptance and requests; a worker, on IHUB_METRICS_PORT: attempts
and outcomes). With it, any process's /metrics adds every process up.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml  # type: ignore[import-untyped]

from exposition import families, label_values, value
from hubs import BACKENDS, HubProcesses, free_port, make_hub, payload, wait_terminal

pytestmark = pytest.mark.acceptance

TOKEN = "metrics-token-for-the-acceptance-tests"
DOCS = Path(__file__).parents[2] / "docs"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def start_worker_with(hub: HubProcesses, name: str, **env: str) -> None:
    """Start a worker whose environment adds ``env`` to the hub's."""
    shared = hub.env
    hub.env = {**shared, **env}
    try:
        hub.start_worker(name)
    finally:
        hub.env = shared


def scrape(url: str, timeout: float = 20.0) -> str:
    """GET a /metrics URL with the token, waiting for the listener to come up."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            resp = httpx.get(url, headers=AUTH, timeout=5)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
            continue
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"].startswith("text/plain")
        return resp.text


def wait_for(url: str, check: Any, timeout: float = 30.0) -> str:
    """Scrape until ``check(text)`` holds; the last exposition."""
    deadline = time.monotonic() + timeout
    while True:
        text = scrape(url)
        if check(text) or time.monotonic() > deadline:
            return text
        time.sleep(0.1)


def send(client: httpx.Client, hub: HubProcesses, country: str, **sandbox: Any) -> str:
    """Submit one notification for acme; its id."""
    body = payload(country, metadata={"sandbox": sandbox} if sandbox else None)
    headers = hub.headers("acme", X_Country=country, Idempotency_Key=str(uuid.uuid4()))
    resp = client.post("/v1/notifications", json=body, headers=headers)
    assert resp.status_code == 202, resp.text
    notification_id: str = resp.json()["id"]
    return notification_id


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A hub (API + one worker with a metrics port) that delivered, retried and failed."""
    hub = make_hub(tmp_path_factory.mktemp("metrics"), IHUB_METRICS_TOKEN=TOKEN)
    worker_port = free_port()
    try:
        hub.create_tenant("acme")
        hub.start_api()
        start_worker_with(hub, "worker", IHUB_METRICS_PORT=str(worker_port))
        with httpx.Client(base_url=hub.base_url, timeout=10) as client:
            ids = [
                send(client, hub, "ES"),
                send(client, hub, "MX", fail="transient", times=1),
                send(client, hub, "US", fail="permanent"),
            ]
            for i in ids:
                assert wait_terminal(client, hub.headers("acme"), i)["status"] in {"DONE", "FAILED"}
            # A scanner's paths and a made-up method must not become label values.
            stray = str(uuid.uuid4())
            assert client.get(f"/wp-admin/{stray}").status_code == 404
            assert client.request("BREW", f"/v1/notifications/{stray}").status_code in {401, 405}
        worker_url = f"http://127.0.0.1:{worker_port}/metrics"
        yield {
            "hub": hub,
            "ids": ids,
            "api": scrape(f"{hub.base_url}/metrics"),
            "worker": wait_for(
                worker_url, lambda t: value(t, "ihub_notifications_finished_total") == 3
            ),
            "worker_url": worker_url,
        }
    finally:
        hub.stop()


def test_the_api_counts_what_it_accepted_and_how_long_ingest_took(
    observed: dict[str, Any],
) -> None:
    api = observed["api"]
    assert value(api, "ihub_notifications_accepted_total", tenant="acme") == 3
    assert value(api, "ihub_notifications_accepted_total", country="MX", channel="whatsapp") == 1
    ingest = "ihub_http_request_duration_seconds_count"
    assert value(api, ingest, method="POST", route="/v1/notifications", status="202") == 3
    # Polled by id, labelled by the route template, never by the id itself.
    assert value(api, ingest, method="GET", route="/v1/notifications/{notification_id}") >= 3
    assert value(api, "ihub_dead_letters") == 1
    assert value(api, "ihub_store_up") == 1


def test_request_labels_are_route_templates_and_known_methods_only(
    observed: dict[str, Any],
) -> None:
    api = observed["api"]
    routes = label_values(api, "ihub_http_request_duration_seconds_count", "route")
    assert "unmatched" in routes
    assert all(
        r == "unmatched" or r.startswith(("/v1/", "/healthz", "/metrics")) for r in routes
    ), routes
    methods = label_values(api, "ihub_http_request_duration_seconds_count", "method")
    assert "BREW" not in methods
    assert "other" in methods


def test_the_worker_counts_attempts_outcomes_and_latencies(observed: dict[str, Any]) -> None:
    worker = observed["worker"]
    attempts = "ihub_attempts_total"
    assert value(worker, attempts, outcome="delivered") == 2
    assert value(worker, attempts, outcome="transient", error_class="sandbox_transient") == 1
    assert value(worker, attempts, outcome="permanent", error_class="sandbox_permanent") == 1
    assert value(worker, "ihub_notifications_finished_total", outcome="done") == 2
    assert value(worker, "ihub_notifications_finished_total", outcome="failed") == 1
    assert value(worker, "ihub_provider_call_duration_seconds_count") == 4
    assert value(worker, "ihub_notification_duration_seconds_count", channel="sms") == 1
    assert value(worker, "ihub_attempts_in_flight") == 0
    assert value(worker, "ihub_dead_letters") == 1


def test_no_id_recipient_or_secret_reaches_either_exposition(observed: dict[str, Any]) -> None:
    hub: HubProcesses = observed["hub"]
    for text in (observed["api"], observed["worker"]):
        for secret in [*observed["ids"], hub.keys["acme"], TOKEN, "ana@example.com", "+52155"]:
            assert secret not in text


def test_metrics_need_the_metrics_token_and_a_tenant_key_does_not_open_them(
    observed: dict[str, Any],
) -> None:
    hub: HubProcesses = observed["hub"]
    for url in (f"{hub.base_url}/metrics", observed["worker_url"]):
        for headers in ({}, hub.headers("acme"), {"Authorization": "Bearer wrong"}):
            resp = httpx.get(url, headers=headers, timeout=5)
            assert resp.status_code == 401, url
            assert resp.headers["content-type"].startswith("application/problem+json")
            assert resp.json()["field"] == "Authorization"
            assert "ihub_" not in resp.text
    assert "/metrics" not in httpx.get(f"{hub.base_url}/openapi.json").json()["paths"]


def test_prometheus_asking_for_openmetrics_gets_openmetrics(observed: dict[str, Any]) -> None:
    hub: HubProcesses = observed["hub"]
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    for url in (f"{hub.base_url}/metrics", observed["worker_url"]):
        resp = httpx.get(url, headers={**AUTH, "Accept": accept}, timeout=5)
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("application/openmetrics-text")
        assert resp.text.endswith("# EOF\n")
        assert "ihub_dead_letters 1" in resp.text


METRIC = re.compile(r"\bihub_[a-z_]+")
SUFFIXES = ("_bucket", "_count", "_sum", "_total")


def referenced_metrics(expressions: list[str]) -> set[str]:
    """The metric families the PromQL expressions name (sample suffixes removed)."""
    names = set()
    for expr in expressions:
        for name in METRIC.findall(expr):
            for suffix in SUFFIXES:
                if name.endswith(suffix):
                    name = name.removesuffix(suffix)
                    break
            names.add(name)
    return names


def dashboard_expressions() -> list[str]:
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    return exprs


def alert_expressions() -> list[str]:
    rules = yaml.safe_load((DOCS / "prometheus-alerts.yml").read_text())
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


@pytest.mark.parametrize("source", [dashboard_expressions, alert_expressions])
def test_every_metric_the_dashboard_and_alerts_use_is_exposed(
    observed: dict[str, Any], source: Any
) -> None:
    used = referenced_metrics(source())
    assert len(used) >= 3
    exposed = families(observed["api"]) | families(observed["worker"])
    assert used <= exposed, f"not exposed: {sorted(used - exposed)}"


def test_every_alert_has_a_runbook_section() -> None:
    rules = yaml.safe_load((DOCS / "prometheus-alerts.yml").read_text())
    runbook = (DOCS / "runbook.md").read_text()
    for rule in (r for g in rules["groups"] for r in g["rules"]):
        assert f"\n### Alert: {rule['alert']}\n" in runbook
        # The anchor GitHub gives that heading.
        assert rule["annotations"]["runbook"] == f"docs/runbook.md#alert-{rule['alert'].lower()}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_many_processes_add_up_in_multiprocess_mode(tmp_path: Path, backend: str) -> None:
    """API + two workers sharing PROMETHEUS_MULTIPROC_DIR: the API's /metrics counts all."""
    shared = tmp_path / "prometheus"
    shared.mkdir()
    hub = make_hub(
        tmp_path,
        backend,
        PROMETHEUS_MULTIPROC_DIR=str(shared),
        IHUB_METRICS_TOKEN=TOKEN,
        IHUB_WORKER_CONCURRENCY="2",  # so that neither worker takes every message
    )
    try:
        hub.create_tenant("acme")
        hub.start_api()
        hub.start_worker("worker-1")
        hub.start_worker("worker-2")
        url = f"{hub.base_url}/metrics"
        with httpx.Client(base_url=hub.base_url, timeout=10) as client:
            # Slow calls, so that both workers hold claims at the same time:
            # more than one worker's concurrency in flight is both, added up.
            ids = [send(client, hub, "FR", delay=0.3) for _ in range(16)]
            busy = wait_for(url, lambda t: value(t, "ihub_attempts_in_flight") >= 3)
            assert value(busy, "ihub_attempts_in_flight") >= 3
            for i in ids:
                assert wait_terminal(client, hub.headers("acme"), i)["status"] == "DONE"
        text = wait_for(url, lambda t: value(t, "ihub_notifications_finished_total") == 16)
        # The API process sent nothing: these are the workers' counts, added up.
        assert value(text, "ihub_notifications_finished_total", outcome="done") == 16
        assert value(text, "ihub_attempts_total", outcome="delivered") == 16
        assert value(text, "ihub_notifications_accepted_total") == 16
        assert len(list(shared.glob("counter_*.db"))) >= 3  # one file per process
        text = wait_for(url, lambda t: value(t, "ihub_attempts_in_flight") == 0)
        assert value(text, "ihub_attempts_in_flight") == 0

        # A stopped worker's counts stay (counters never go back), its live gauge goes.
        hub.procs[1].terminate()
        hub.procs[1].wait(timeout=30)
        after = scrape(url)
        assert value(after, "ihub_notifications_finished_total") == 16
        assert not list(shared.glob(f"gauge_livesum_{hub.procs[1].pid}.db"))
    finally:
        hub.stop()


def test_a_missing_multiprocess_directory_is_a_configuration_error(tmp_path: Path) -> None:
    missing = tmp_path / "not-created"
    hub = make_hub(tmp_path, PROMETHEUS_MULTIPROC_DIR=str(missing))
    done = hub.cli("tenants", "list")
    assert done.returncode == 1
    assert "PROMETHEUS_MULTIPROC_DIR" in done.stderr
    assert "Traceback" not in done.stderr
