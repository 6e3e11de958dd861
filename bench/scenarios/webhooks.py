"""Scenario 6: tenant webhooks, their fan-out throughput and their cost to notifications.

One backlog of N notifications is accepted through the API with no worker
running (each accept writes its ``notification.accepted`` event in the same
transaction) and frozen, as the drain scenario builds it. Then:

1. **Fan-out.** A copy gets one endpoint of the tenant at the receiver
   (``bench/webhook_receiver.py``, its own process, answering 200 at once);
   ``bench/webhook_loop.py`` runs the hub's delivery loop
   (``Hub.webhook_deliverer().drain``) until all N events are delivered:
   fanned out, claimed, secret unsealed, signed, POSTed, recorded. Against it,
   ``bench/webhook_bare.py`` POSTs the same N bodies to the same receiver at
   the same concurrency with nothing else. One endpoint is held to its
   in-flight cap (``IHUB_WEBHOOKS_PER_ENDPOINT``, 4 as shipped), so the pair
   runs at each cap of ``webhook_caps``, the bare loop at that concurrency.
2. **Isolation.** The drain of scenario 2 (``ihub worker``, whose delivery
   loop runs beside dispatch by default) on copies that differ only in the
   tenant's endpoint: ``none``; ``hanging``, at ``/hang`` of a receiver that
   never answers, so its 4 slots stay taken for the whole drain and every
   accepted and done event of the tenant is fanned out to it; ``fast``, at a
   receiver answering 200, so the loop really delivers while dispatch drains;
   and ``off``, no endpoint and ``IHUB_WEBHOOKS_IN_WORKER=false`` (the loop's
   own cost). The target compares ``hanging`` with ``none``.

Within each repetition the variants of a part run side by side, their order
alternating between repetitions.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from bench import hub
from bench.backends import Backend, Snapshot
from bench.context import Context
from bench.procs import PYTHON, Proc, read_ready
from bench.procs import run as run_command
from bench.scenarios import drain
from bench.stats import ratio, summary

ISOLATION = ("off", "none", "hanging", "fast")
# The hanging variant's in-flight requests would hold the worker's shutdown
# until their 15 s timeout; the drain is measured by then, so it is killed.
HANGING_STOP_SECONDS = 2.0


def start_receiver(ctx: Context, name: str) -> tuple[Proc, int]:
    """``bench.webhook_receiver`` in its own process; (process, port)."""
    proc = Proc(name, [PYTHON, "-m", "bench.webhook_receiver"], workdir=ctx.workdir,
                stdout_pipe=True)  # fmt: skip
    port = int(read_ready(proc).split()[1])
    return proc, port


def receiver_stats(port: int) -> dict[str, int]:
    """The receiver's counters."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as r:
        return {k: int(v) for k, v in json.loads(r.read()).items()}


def add_endpoint(ctx: Context, backend: Backend, tenant: str, url: str) -> str:
    """A webhook endpoint of ``tenant`` at ``url`` in ``backend``; its id."""
    out = run_command(
        [PYTHON, "-m", "bench.webhook_setup", "endpoint", "--tenant", tenant, "--url", url],
        workdir=ctx.workdir,
        env=ctx.hub_env(backend.url),
    )
    return out.strip()


def dump_bodies(ctx: Context, backend: Backend, out: Path) -> int:
    """Every outbox event's body into ``out``; how many."""
    text = run_command(
        [PYTHON, "-m", "bench.webhook_setup", "bodies", "--out", str(out)],
        workdir=ctx.workdir,
        env=ctx.hub_env(backend.url),
    )
    return int(text.strip())


def delivery_counts(backend: Backend) -> dict[str, int]:
    """Deliveries by status."""
    rows = backend.fetch("SELECT status, COUNT(*) FROM webhook_deliveries GROUP BY status")
    return {str(status): int(n) for status, n in rows}


def cap_env(cap: int) -> dict[str, str]:
    """The loop's settings for one endpoint held to ``cap`` in flight (4: as shipped)."""
    if cap == 4:
        return {}
    return {
        "IHUB_WEBHOOKS_PER_ENDPOINT": str(cap),
        "IHUB_WEBHOOKS_PER_TENANT": str(max(cap, 16)),
        "IHUB_WEBHOOKS_CONCURRENCY": str(max(cap, 32)),
    }


# -- 1. fan-out -------------------------------------------------------------------------


def fanout_hub(
    ctx: Context, snapshot: Snapshot, tenant: str, n: int, port: int, cap: int, label: str
) -> dict[str, Any]:
    """The hub's delivery loop on a copy with one endpoint at the receiver; timed."""
    backend = snapshot.restore(label)
    try:
        add_endpoint(ctx, backend, tenant, f"http://127.0.0.1:{port}/hooks")
        before = hub.sink_posts(port)
        proc = Proc(
            label,
            [PYTHON, "-m", "bench.webhook_loop", "--deadline", str(max(300.0, n / 20))],
            workdir=ctx.workdir,
            env=ctx.hub_env(backend.url, **cap_env(cap)),
            stdout_pipe=True,
        )
        try:
            out, _ = proc.popen.communicate(timeout=max(330.0, n / 20 + 30))
        finally:
            proc.stop()
        if proc.popen.returncode != 0:
            raise RuntimeError(f"webhook loop failed:\n{proc.tail()}")
        result = json.loads(out.decode().strip().splitlines()[-1])
        counts = delivery_counts(backend)
        first, last = backend.fetch(
            "SELECT MIN(finished_at), MAX(finished_at) FROM webhook_deliveries"
            " WHERE status = 'succeeded'"
        )[0]
    finally:
        backend.drop()
    if first is None or last is None:
        raise RuntimeError(f"the delivery loop delivered nothing: {counts}")
    return {
        "n": n,
        "done": counts.get("succeeded", 0),
        "failed": n - counts.get("succeeded", 0),
        "deliveries": counts,
        "receiver_posts": hub.sink_posts(port) - before,
        "seconds": last - proc.started_at,
        "loop_seconds": result["loop_seconds"],
        "rate": n / (last - proc.started_at),
        "loop_rate": n / result["loop_seconds"],
        "steady_rate": (n - 1) / (last - first) if last > first else None,
    }


def fanout_bare(ctx: Context, bodies: Path, n: int, port: int, cap: int) -> dict[str, Any]:
    """``bench.webhook_bare``: the same bodies, POSTed with nothing else; the limit."""
    args = ["--url", f"http://127.0.0.1:{port}/hooks", "--bodies", str(bodies)]
    result = hub.run_bare(
        ctx, "webhook-bare", "bench.webhook_bare", [*args, "--concurrency", str(cap)], port
    )
    return {
        "n": n,
        "done": n - result["failures"],
        "failed": result["failures"],
        "receiver_posts": result["posts"],
        "seconds": result["seconds"],
        "loop_seconds": result["loop_seconds"],
        "rate": n / result["seconds"],
        "loop_rate": n / result["loop_seconds"],
        "steady_rate": (n - 1) / result["steady_seconds"],
    }


def run_fanout(ctx: Context, snapshot: Snapshot, tenant: str, n: int, port: int) -> dict[str, Any]:
    """Hub and bare loop at each cap, ``repeats`` times, alternating which goes first."""
    s = ctx.settings
    bodies = ctx.workdir / "webhook-bodies.jsonl"
    copy = snapshot.restore("webhook-bodies")
    try:
        if dump_bodies(ctx, copy, bodies) != n:
            raise RuntimeError(f"the backlog's outbox does not hold {n} events")
    finally:
        copy.drop()
    raw: list[dict[str, Any]] = []
    for rep in range(s.repeats):
        for i, cap in enumerate(s.webhook_caps):
            pair = [f"hub-c{cap}", f"bare-c{cap}"]
            for variant in reversed(pair) if (rep + i) % 2 else pair:
                if variant.startswith("hub"):
                    label = f"r{rep}whhubc{cap}"
                    result = fanout_hub(ctx, snapshot, tenant, n, port, cap, label)
                else:
                    result = fanout_bare(ctx, bodies, n, port, cap)
                result.update(variant=variant, cap=cap, repeat=rep)
                raw.append(result)
                ctx.log(
                    f"webhooks fan-out rep {rep} {variant:>9}: {result['rate']:8.1f}/s"
                    f" (loop {result['loop_rate']:8.1f}/s, steady"
                    f" {result['steady_rate'] or 0:8.1f}/s) delivered {result['done']}/{n}"
                    f" receiver {result['receiver_posts']}"
                )
    return {"n": n, "caps": list(s.webhook_caps), "raw": raw, "summary": summarize_fanout(raw)}


def summarize_fanout(raw: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and spread per variant; hub / bare per repetition at each cap."""
    out: dict[str, Any] = {"variants": {}, "ratios": {}}
    variants = sorted({r["variant"] for r in raw}, key=[r["variant"] for r in raw].index)
    for v in variants:
        runs = [r for r in raw if r["variant"] == v]
        out["variants"][v] = {
            m: summary(r.get(m) for r in runs)
            for m in ("rate", "loop_rate", "steady_rate", "seconds")
        }
    by_rep: dict[tuple[int, int], dict[str, dict[str, Any]]] = {}
    for r in raw:
        by_rep.setdefault((r["repeat"], r["cap"]), {})[r["variant"].split("-")[0]] = r
    for cap in sorted({r["cap"] for r in raw}):
        pairs = [p for (_, c), p in by_rep.items() if c == cap and len(p) == 2]
        for metric in ("rate", "loop_rate", "steady_rate"):
            out["ratios"][f"c{cap}/{metric}"] = summary(
                ratio(p["hub"][metric], p["bare"][metric]) for p in pairs
            )
    return out


# -- 2. isolation -----------------------------------------------------------------------


def run_isolation(
    ctx: Context,
    snapshot: Snapshot,
    tenant: str,
    n: int,
    sink_port: int,
    fast_port: int,
    hang_port: int,
) -> dict[str, Any]:
    """The drain with no endpoint, a hanging one and a fast one, side by side."""
    s = ctx.settings
    urls = {
        "hanging": f"http://127.0.0.1:{hang_port}/hang",
        "fast": f"http://127.0.0.1:{fast_port}/hooks",
    }
    variants = s.webhook_isolation
    raw: list[dict[str, Any]] = []
    for rep in range(s.repeats):
        # Rotated, so that no variant always runs first (or right after another).
        order = variants[rep % len(variants) :] + variants[: rep % len(variants)]
        for variant in order:
            url = urls.get(variant)
            fast_before = hub.sink_posts(fast_port)
            hung_before = receiver_stats(hang_port)["hung"]

            def prepare(backend: Backend, url: str | None = url) -> None:
                if url is not None:
                    add_endpoint(ctx, backend, tenant, url)

            def observe(
                backend: Backend, fast_before: int = fast_before, hung_before: int = hung_before
            ) -> dict[str, Any]:
                # Read at the moment the last notification is finished.
                hung = receiver_stats(hang_port)
                return {
                    "webhooks": delivery_counts(backend),
                    "hanging_requests": hung["hanging"],
                    "hung_requests": hung["hung"] - hung_before,
                    "fast_posts": hub.sink_posts(fast_port) - fast_before,
                }

            result = drain.drain_hub(
                ctx,
                snapshot,
                n,
                1,
                sink_port,
                f"r{rep}wh{variant}",
                prepare=prepare,
                observe=observe,
                env={"IHUB_WEBHOOKS_IN_WORKER": "false"} if variant == "off" else None,
                stop_timeout=HANGING_STOP_SECONDS if variant == "hanging" else 15.0,
            )
            result.update(variant=variant, repeat=rep)
            raw.append(result)
            ctx.log(
                f"webhooks isolation rep {rep} {variant:>8}: {result['rate']:8.1f}/s"
                f" (steady {result['steady_rate'] or 0:8.1f}/s) done {result['done']}/{n}"
                f" sink {result['sink_posts']} webhooks {result['webhooks']}"
                f" hanging now {result['hanging_requests']} (in all {result['hung_requests']})"
                f" fast {result['fast_posts']}"
            )
            # Let the hanging receiver see its connections close before the next run.
            time.sleep(0.5)
    return {"n": n, "raw": raw, "summary": summarize_isolation(raw)}


def summarize_isolation(raw: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and spread per variant; each variant / ``none`` per repetition."""
    out: dict[str, Any] = {"variants": {}, "ratios": {}}
    variants = [v for v in ISOLATION if any(r["variant"] == v for r in raw)]
    for v in variants:
        runs = [r for r in raw if r["variant"] == v]
        out["variants"][v] = {
            m: summary(r.get(m) for r in runs)
            for m in ("rate", "steady_rate", "seconds", "peak_rss_mib", "hanging_requests")
        }
    by_rep: dict[int, dict[str, dict[str, Any]]] = {}
    for r in raw:
        by_rep.setdefault(r["repeat"], {})[r["variant"]] = r
    for v in (v for v in variants if v != "none"):
        for metric in ("rate", "steady_rate"):
            out["ratios"][f"{v}/none/{metric}"] = summary(
                ratio(reps[v][metric], reps["none"][metric])
                for reps in by_rep.values()
                if v in reps and "none" in reps
            )
    return out


def run(ctx: Context) -> dict[str, Any]:
    """Both parts on SQLite, from one backlog of ``webhook_events`` notifications."""
    s = ctx.settings
    n = s.webhook_events
    sink, sink_port = hub.start_sink(ctx, "sink-webhooks")
    receiver, fast_port = start_receiver(ctx, "webhook-receiver")
    hanging, hang_port = start_receiver(ctx, "webhook-hanging")
    snapshot: Snapshot | None = None
    try:
        snapshot, tenant = drain.build_backlog(ctx, "sqlite", n, sink_port)
        fanout = run_fanout(ctx, snapshot, tenant, n, fast_port)
        isolation = run_isolation(ctx, snapshot, tenant, n, sink_port, fast_port, hang_port)
    finally:
        for proc in (hanging, receiver, sink):
            proc.stop()
        if snapshot is not None:
            snapshot.drop()
    return {"backend": "sqlite", "n": n, "fanout": fanout, "isolation": isolation}
