"""``ihub top`` against a running hub: an API and a worker, scraped over HTTP."""

from __future__ import annotations

import http.server
import json
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from rich.console import Console

from hubs import HubProcesses, free_port, make_hub, payload, wait_terminal
from integration_hub.entrypoints import top

pytestmark = pytest.mark.acceptance

TOKEN = "top-token-for-the-acceptance-tests"


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """An API and a worker (metrics on its own port), both behind the metrics token."""
    hub = make_hub(tmp_path_factory.mktemp("top"), IHUB_METRICS_TOKEN=TOKEN)
    worker_port = free_port()
    try:
        hub.create_tenant("acme")
        hub.start_api()
        hub.env = {**hub.env, "IHUB_METRICS_PORT": str(worker_port)}
        hub.start_worker()
        urls = [f"{hub.base_url}/metrics", f"http://127.0.0.1:{worker_port}/metrics"]
        deadline = time.monotonic() + 20
        while True:  # until the worker's listener is up
            try:
                top.scrape(urls, TOKEN)
                break
            except top.ScrapeError:
                assert time.monotonic() < deadline, hub.logs()
                time.sleep(0.1)
        yield {"hub": hub, "urls": urls}
    finally:
        hub.stop()


def send_and_finish(hub: HubProcesses, bodies: list[tuple[str, dict[str, Any] | None]]) -> None:
    """Submit for acme and wait until each notification is DONE or FAILED."""
    with httpx.Client(base_url=hub.base_url, timeout=10) as client:
        ids = []
        for country, sandbox in bodies:
            body = payload(country, metadata={"sandbox": sandbox} if sandbox else None)
            key = str(uuid.uuid4())
            headers = hub.headers("acme", X_Country=country, Idempotency_Key=key)
            resp = client.post("/v1/notifications", json=body, headers=headers)
            assert resp.status_code == 202, resp.text
            ids.append(resp.json()["id"])
        for i in ids:
            assert wait_terminal(client, hub.headers("acme"), i)["status"] in {"DONE", "FAILED"}


def scrape_when(urls: list[str], check: Callable[[top.Sample], bool]) -> top.Sample:
    """Scrape until ``check`` holds: the worker's counters, and the store gauges (cached
    for two seconds), catch up a moment after the notifications finish."""
    deadline = time.monotonic() + 30
    while True:
        sample = top.scrape(urls, TOKEN)
        if check(sample):
            return sample
        assert time.monotonic() < deadline, "the metrics never caught up"
        time.sleep(0.1)


def test_a_frame_shows_rates_queue_dead_letters_and_provider_error_rates(
    running: dict[str, Any],
) -> None:
    hub, urls = running["hub"], running["urls"]
    before = replace(scrape_when(urls, lambda s: True), at=100.0)
    done_before = before.finished.get("done", 0.0)
    failed_before = before.finished.get("failed", 0.0)
    send_and_finish(
        hub,
        [
            ("ES", None),
            ("FR", None),
            ("MX", {"fail": "transient", "times": 1}),
            ("US", {"fail": "permanent"}),
        ],
    )
    now = scrape_when(
        urls,
        lambda s: (
            sum(s.finished.values()) == done_before + failed_before + 4
            and s.dead_letters == (before.dead_letters or 0) + 1
        ),
    )
    f = top.frame(before, replace(now, at=102.0))  # as if two seconds apart

    assert f.accepted_per_second == pytest.approx(2.0)  # 4 in 2 s
    assert f.done_per_second == pytest.approx(1.5)
    assert f.failed_per_second == pytest.approx(0.5)
    assert f.dead_letters == (before.dead_letters or 0) + 1
    assert f.store_up is True
    assert f.queue == {"visible": 0, "in_flight": 0, "delayed": 0}
    [sandbox] = f.providers
    assert sandbox.provider == "sandbox"
    assert sandbox.calls_per_second == pytest.approx(2.5)  # 5 calls: one retried
    assert sandbox.errors_per_second == pytest.approx(1.0)
    assert sandbox.error_rate == pytest.approx(0.4)

    console = Console(record=True, width=100, color_system=None)
    console.print(top.render(f, top.describe(urls)))
    screen = console.export_text()
    assert "accepted/s   2.0" in screen
    assert "dead letters" in screen
    assert "sandbox" in screen
    assert "40%" in screen
    assert "rates over 2.0 s" in screen


def test_ihub_top_once_prints_one_frame_and_json_for_scripts(running: dict[str, Any]) -> None:
    hub, urls = running["hub"], running["urls"]
    send_and_finish(hub, [("US", {"fail": "permanent"})])
    scrape_when(urls, lambda s: (s.dead_letters or 0) >= 1)  # past the gauges' cache
    args = [a for url in urls for a in ("--url", url)]
    shown = hub.cli("top", "--once", "--interval", "0.2", *args)
    assert shown.returncode == 0, shown.stderr
    assert "Integration Hub" in shown.stdout
    assert "sandbox" in shown.stdout

    as_json = hub.cli("top", "--json", "--interval", "0.2", *args)
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert data["dead_letters"] >= 1
    assert data["store_up"] is True
    assert [p["provider"] for p in data["providers"]] == ["sandbox"]


def test_ihub_top_without_the_token_says_which_setting_it_needs(
    running: dict[str, Any],
) -> None:
    hub: HubProcesses = running["hub"]
    saved = hub.env
    hub.env = {k: v for k, v in saved.items() if k != "IHUB_METRICS_TOKEN"}
    try:
        done = hub.cli("top", "--once", "--interval", "0.1", "--url", running["urls"][0])
    finally:
        hub.env = saved
    assert done.returncode == 1
    assert "HTTP 401" in done.stderr
    assert "IHUB_METRICS_TOKEN" in done.stderr


def test_ihub_top_reports_an_unreachable_hub_and_exits_1(running: dict[str, Any]) -> None:
    hub: HubProcesses = running["hub"]
    url = f"http://127.0.0.1:{free_port()}/metrics"
    done = hub.cli("top", "--once", "--url", url)
    assert done.returncode == 1
    assert url in done.stderr


class CountingForwarder:
    """Forwards scrapes to a metrics URL and counts them, so a test knows top is refreshing."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.scrapes = 0
        forwarder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                auth = self.headers.get("Authorization")
                upstream = httpx.get(
                    forwarder.target, headers={"Authorization": auth} if auth else {}, timeout=10
                )
                forwarder.scrapes += 1
                self.send_response(upstream.status_code)
                self.send_header("Content-Type", upstream.headers.get("content-type", "text/plain"))
                self.send_header("Content-Length", str(len(upstream.content)))
                self.end_headers()
                self.wfile.write(upstream.content)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/metrics"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> CountingForwarder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_ihub_top_refreshes_until_interrupted_and_then_exits_cleanly(
    running: dict[str, Any],
) -> None:
    hub: HubProcesses = running["hub"]
    with CountingForwarder(running["urls"][0]) as forwarder:
        proc = subprocess.Popen(
            [sys.executable, "-m", "integration_hub", "top", "--interval", "0.2",
             "--url", forwarder.url],
            env={**hub.env, "COLUMNS": "100"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        try:
            # Interrupt only once top has refreshed a few times: a loaded machine
            # can take seconds to start the CLI, and a SIGINT during its imports
            # is not what this test is about.
            deadline = time.monotonic() + 60
            while forwarder.scrapes < 3 and proc.poll() is None:
                assert time.monotonic() < deadline, "top never scraped three times"
                time.sleep(0.05)
            proc.send_signal(signal.SIGINT)
            out, errors = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, errors
    assert "Traceback" not in errors
    # Off a terminal rich prints the last frame only: one drawn from a refresh
    # (rates over an interval), not the first one (no interval yet).
    shown = re.search(r"Integration Hub · rates over (\d+\.\d) s", out)
    assert shown is not None, out
    assert float(shown.group(1)) >= 0.2
