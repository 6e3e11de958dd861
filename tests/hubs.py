"""Hubs as real processes (uvicorn serving the API, workers) for acceptance tests.

Every hub runs on a SQLite file or on a throwaway PostgreSQL database.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

import pg
import support
from integration_hub.bootstrap import build_hub
from integration_hub.config import Settings
from integration_hub.ports import Store
from support import LOCAL_OUTBOUND_ENV

TERMINAL = {"DONE", "FAILED"}

BACKENDS = ["sqlite", "postgres"]

FAST = {
    "IHUB_POLL_INTERVAL_SECONDS": "0.05",
    "IHUB_BACKOFF_BASE_SECONDS": "0.2",
    "IHUB_BACKOFF_CAP_SECONDS": "0.4",
    "IHUB_VISIBILITY_TIMEOUT_SECONDS": "3",
    "IHUB_PROVIDER_TIMEOUT_SECONDS": "2.5",
    "IHUB_SHUTDOWN_GRACE_SECONDS": "10",
    "IHUB_TENANT_CACHE_SECONDS": "0",
    "IHUB_LOG_LEVEL": "warning",
    "IHUB_ADMIN_TOKEN": "admin-token-for-the-acceptance-tests",
    # The fake providers listen on 127.0.0.1 over plain http.
    **LOCAL_OUTBOUND_ENV,
}


def free_port() -> int:
    """A port nobody listens on right now (``support.free_port``: safe under xdist)."""
    return support.free_port()


@dataclass
class HubProcesses:
    """An API process and any number of worker processes on one database."""

    workdir: Path
    database_url: str
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        """Where the API listens."""
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self, *args: str, log: str) -> subprocess.Popen[bytes]:
        out = (self.workdir / log).open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "integration_hub", *args],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )
        out.close()
        self.procs.append(proc)
        return proc

    def start_api(self) -> subprocess.Popen[bytes]:
        """Start `ihub api` and wait until it answers."""
        proc = self._spawn("api", "--port", str(self.port), log="api.log")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=0.5).status_code == 200:
                    return proc
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError("API did not start:\n" + self.logs())

    def start_worker(self, name: str = "worker") -> subprocess.Popen[bytes]:
        """Start `ihub worker`."""
        return self._spawn("worker", log=f"{name}.log")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run an `ihub` command against this database."""
        return subprocess.run(
            [sys.executable, "-m", "integration_hub", *args],
            env=self.env,
            capture_output=True,
            text=True,
            cwd=self.workdir,
            timeout=60,
            check=False,
        )

    def create_tenant(self, tenant: str) -> str:
        """Create a tenant with the CLI; its API key."""
        done = self.cli("tenants", "create", tenant, "--json")
        assert done.returncode == 0, done.stderr
        key: str = json.loads(done.stdout)["api_key"]
        self.keys[tenant] = key
        return key

    def headers(self, tenant: str, **extra: str) -> dict[str, str]:
        """Auth headers for a tenant, plus any extra ones."""
        base = {"Authorization": f"Bearer {self.keys[tenant]}", "X-Tenant": tenant}
        return {**base, **{k.replace("_", "-"): v for k, v in extra.items()}}

    def logs(self) -> str:
        """Everything the processes printed."""
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')}" for p in self.workdir.glob("*.log")
        )

    def stop(self) -> None:
        """SIGTERM everything still running, SIGKILL what does not stop."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        while self.cleanups:
            self.cleanups.pop()()


def make_hub(workdir: Path, backend: str = "sqlite", **env: str) -> HubProcesses:
    """A hub on a fresh SQLite file in ``workdir`` or a throwaway PostgreSQL database.

    Nothing is started yet; ``stop()`` also drops the PostgreSQL database.
    """
    postgres = backend == "postgres"
    url = pg.create_database() if postgres else f"sqlite:///{workdir / 'hub.db'}"
    full_env = {**os.environ, **FAST, "IHUB_DATABASE_URL": url, **env}
    if postgres:
        # SQLite hubs create their key file beside the database; PostgreSQL
        # hubs, like a real multi-machine deployment, are given the key.
        full_env.setdefault("IHUB_MASTER_KEY", base64.b64encode(os.urandom(32)).decode())
    procs = HubProcesses(workdir, url, full_env)
    if postgres:
        procs.cleanups.append(lambda: pg.drop_database(url))
    return procs


@asynccontextmanager
async def open_store(database_url: str) -> AsyncIterator[Store]:
    """The Store of the hub's database, as another process of the hub would open it."""
    hub = await build_hub(Settings(database_url=database_url))
    try:
        yield hub.store
    finally:
        await hub.close()


def payload(country: str, **extra: Any) -> dict[str, Any]:
    """A valid body for the channel the default table routes ``country`` to."""
    email = country.upper() in {"ES", "FR", "IT", "GR"}
    body: dict[str, Any] = {
        "recipient": {"email": "ana@example.com"} if email else {"phone": "+5215512345678"},
        "body": f"hello {country}",
    }
    if email:
        body["subject"] = "Hello"
    body.update(extra)
    return body


def wait_terminal(
    client: httpx.Client, headers: dict[str, str], notification_id: str, timeout: float = 30
) -> dict[str, Any]:
    """Poll until the notification is DONE or FAILED."""
    deadline = time.monotonic() + timeout
    while True:
        view: dict[str, Any] = client.get(
            f"/v1/notifications/{notification_id}", headers=headers
        ).json()
        if view["status"] in TERMINAL or time.monotonic() > deadline:
            return view
        time.sleep(0.05)
