"""Scenario 1: ingest throughput and latency of ``ihub api`` against a no-op baseline.

Both servers run for the whole scenario; they are measured one after the
other, alternating which goes first, at each concurrency and repetition, so
that the ratio ``hub / no-op`` compares runs made side by side.

Each is measured as shipped and, as a second pair, with the listening socket
bound as ``bench.nodelay`` binds it (``TCP_NODELAY`` on every connection), to
show what that one-line fix changes.
"""

from __future__ import annotations

from typing import Any

from bench import hub, load
from bench.backends import Backend, new_backend
from bench.context import Context
from bench.procs import PYTHON, Proc, free_port, wait_http
from bench.stats import ratio, summary

TARGETS = ("hub", "noop", "hub-nodelay", "noop-nodelay")


def start_noop(ctx: Context, name: str, *, nodelay: bool) -> int:
    """The no-op baseline app on a free port."""
    port = free_port()
    args = [PYTHON, "-m", "bench.noop_app", "--port", str(port)]
    proc = Proc(name, [*args, "--nodelay"] if nodelay else args, workdir=ctx.workdir)
    wait_http(f"http://127.0.0.1:{port}/healthz", proc)
    ctx.procs[name] = proc
    return port


def start_hub_nodelay(ctx: Context, backend: Backend, name: str) -> int:
    """``ihub api`` through ``bench.nodelay`` (the proposed bind fix) on a free port."""
    port = free_port()
    proc = Proc(
        name,
        [PYTHON, "-m", "bench.nodelay", "api", "--host", "127.0.0.1", "--port", str(port)],
        workdir=ctx.workdir,
        env=ctx.hub_env(backend.url),
    )
    wait_http(f"http://127.0.0.1:{port}/healthz", proc)
    ctx.procs[name] = proc
    return port


def run(ctx: Context, backend_kind: str = "sqlite") -> dict[str, Any]:
    """Measure both servers at every concurrency, ``repeats`` times."""
    s = ctx.settings
    backend = new_backend(backend_kind, ctx.workdir, "ingest")
    tenant = "bench"
    key = hub.create_tenant(ctx, backend, tenant)
    ports = {
        "hub": hub.start_api(ctx, backend, "hub"),
        "noop": start_noop(ctx, "noop", nodelay=False),
        "hub-nodelay": start_hub_nodelay(ctx, backend, "hub-nodelay"),
        "noop-nodelay": start_noop(ctx, "noop-nodelay", nodelay=True),
    }
    headers = hub.auth_headers(tenant, key, "ES")
    targets = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    raw: list[dict[str, Any]] = []
    try:
        for rep in range(s.repeats):
            for c in s.ingest_concurrency:
                # Pairs side by side; which of a pair goes first alternates.
                flip = (rep + s.ingest_concurrency.index(c)) % 2 == 1
                order = [
                    *(("noop", "hub") if flip else ("hub", "noop")),
                    *(("noop-nodelay", "hub-nodelay") if flip else ("hub-nodelay", "noop-nodelay")),
                ]
                for name in order:
                    result = load.closed_loop(
                        targets[name],
                        tool=ctx.load_tool,
                        concurrency=c,
                        warmup=s.warmup_s,
                        duration=s.duration_s,
                        headers=headers,
                        body=hub.EMAIL_ES,
                    )
                    result.update(target=name, repeat=rep)
                    raw.append(result)
                    ctx.log(
                        f"ingest {backend_kind} rep {rep} c={c:>3} {name:>12}:"
                        f" {result['rps']:8.1f} req/s p50 {result['p50_ms']:.2f} ms"
                        f" p99 {result['p99_ms']:.2f} ms errors {result['errors']}"
                    )
        stored = backend.status_counts()
    finally:
        for name in TARGETS:
            proc = ctx.procs.pop(name, None)
            if proc is not None:
                proc.stop()
        size = backend.size_bytes()
        backend.drop()
    return {
        "backend": backend_kind,
        "tool": ctx.load_tool,
        "raw": raw,
        "points": aggregate(raw, s.ingest_concurrency),
        "stored": stored,
        "db_bytes": size,
    }


def aggregate(raw: list[dict[str, Any]], concurrencies: tuple[int, ...]) -> list[dict[str, Any]]:
    """Per concurrency: median and spread of each metric, and of the per-repeat ratio."""
    points = []
    for c in concurrencies:
        point: dict[str, Any] = {"concurrency": c}
        for name in TARGETS:
            runs = [r for r in raw if r["concurrency"] == c and r["target"] == name]
            point[name] = {
                metric: summary(r[metric] for r in runs)
                for metric in ("rps", "p50_ms", "p99_ms", "p999_ms", "errors")
            }
        pairs: dict[int, dict[str, float]] = {}
        for r in raw:
            if r["concurrency"] == c:
                pairs.setdefault(r["repeat"], {})[r["target"]] = r["rps"]
        point["ratio"] = summary(ratio(p.get("hub"), p.get("noop")) for p in pairs.values())
        point["ratio_nodelay"] = summary(
            ratio(p.get("hub-nodelay"), p.get("noop-nodelay")) for p in pairs.values()
        )
        point["nodelay_gain"] = summary(
            ratio(p.get("hub-nodelay"), p.get("hub")) for p in pairs.values()
        )
        points.append(point)
    return points
