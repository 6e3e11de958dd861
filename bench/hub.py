"""Driving the hub as a user would: its ``ihub`` command, its API and worker processes."""

from __future__ import annotations

import json
from typing import Any

from bench.backends import Backend
from bench.context import Context
from bench.procs import PYTHON, Proc, free_port, read_ready, run, wait_http

IHUB = [PYTHON, "-m", "integration_hub"]

# A valid request of each kind the scenarios send.
EMAIL_ES = {
    "recipient": {"email": "ana@example.com"},
    "subject": "Bienvenida",
    "body": "Hola Ana, tu pedido 1001 ha salido del almacén.",
}
SMS_US = {"recipient": {"phone": "+12025550123"}, "body": "Your code is 123456"}
ACCOUNT_SID = "AC00000000000000000000000000000000"


def ihub(ctx: Context, backend: Backend, *args: str, stdin: str | None = None) -> str:
    """Run one ``ihub`` command against ``backend``; its stdout."""
    return run([*IHUB, *args], workdir=ctx.workdir, env=ctx.hub_env(backend.url), stdin=stdin)


def create_tenant(ctx: Context, backend: Backend, name: str) -> str:
    """Create a tenant (migrating the database first if needed); its API key."""
    out = ihub(ctx, backend, "tenants", "create", name, "--json")
    return str(json.loads(out)["api_key"])


def use_twilio_sink(ctx: Context, backend: Backend, tenant: str, sink_port: int) -> None:
    """Route the tenant's SMS to the real Twilio adapter, pointed at the local sink."""
    ihub(ctx, backend, "tenants", "set-provider", tenant, "sms", "twilio")
    settings = {
        "account_sid": ACCOUNT_SID,
        "auth_token": "x",
        "from_number": "+15005550006",
        "base_url": f"http://127.0.0.1:{sink_port}",
    }
    ihub(ctx, backend, "tenants", "set-credentials", tenant, "twilio", "--stdin",
         stdin=json.dumps(settings))  # fmt: skip


def start_api(ctx: Context, backend: Backend, name: str = "api", *, serve: bool = False) -> int:
    """``ihub api`` (or ``ihub serve``: API and worker) on a free port; the port."""
    port = free_port()
    command = "serve" if serve else "api"
    proc = Proc(
        name,
        [*IHUB, command, "--host", "127.0.0.1", "--port", str(port)],
        workdir=ctx.workdir,
        env=ctx.hub_env(backend.url),
    )
    wait_http(f"http://127.0.0.1:{port}/healthz", proc)
    ctx.procs[name] = proc
    return port


def start_worker(
    ctx: Context, backend: Backend, name: str, concurrency: int, env: dict[str, str] | None = None
) -> Proc:
    """``ihub worker`` (not waited for: its start is part of what a drain measures)."""
    return Proc(
        name,
        [*IHUB, "worker", "--concurrency", str(concurrency)],
        workdir=ctx.workdir,
        env=ctx.hub_env(backend.url, **(env or {})),
    )


def stop(ctx: Context, name: str) -> None:
    """Stop a process started by :func:`start_api`."""
    proc = ctx.procs.pop(name, None)
    if proc is not None:
        proc.stop()


def start_sink(ctx: Context, name: str = "sink") -> tuple[Proc, int]:
    """The Twilio-like sink in its own process; (process, port)."""
    proc = Proc(name, [PYTHON, "-m", "bench.sink"], workdir=ctx.workdir, stdout_pipe=True)
    port = int(read_ready(proc).split()[1])
    return proc, port


def sink_posts(port: int) -> int:
    """How many messages the sink has taken."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as r:
        return int(json.loads(r.read())["posts"])


def auth_headers(tenant: str, api_key: str, country: str | None = None) -> dict[str, str]:
    """The headers of an authenticated API call."""
    headers = {"Authorization": f"Bearer {api_key}", "X-Tenant": tenant}
    if country:
        headers["X-Country"] = country
        headers["Content-Type"] = "application/json"
    return headers


def run_bare(ctx: Context, name: str, module: str, args: list[str], port: int) -> dict[str, Any]:
    """Run a bare aiohttp loop (``bench.bare_loop`` or ``bench.webhook_bare``) against the
    sink or receiver on ``port``: its last JSON line, plus ``seconds`` from process start
    and ``posts``, what the server counted meanwhile."""
    before = sink_posts(port)
    proc = Proc(name, [PYTHON, "-m", module, *args], workdir=ctx.workdir, stdout_pipe=True)
    try:
        out, _ = proc.popen.communicate(timeout=300)
    finally:
        proc.stop()
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    result["seconds"] = result["end_epoch"] - proc.started_at
    result["posts"] = sink_posts(port) - before
    return result
