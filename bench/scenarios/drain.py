"""Scenarios 2 and 5: draining a backlog into the sink, against the limit and a peer.

The backlog is built once through the API (no worker running) and frozen as a
snapshot; every measured drain starts from an identical copy of it. Variants,
interleaved within each repetition:

- ``hub-wN``: N ``ihub worker`` processes (the tenant's SMS routed to the real
  Twilio adapter, pointed at the sink), timed from the start of the processes
  until the database shows every notification DONE;
- ``bare``: ``bench.bare_loop``, the same POSTs from a bare aiohttp loop (the limit);
- ``celery-POOL``: ``bench.celery_peer``, a Celery + Redis pipeline doing the
  same job with its backlog in the same kind of database.

``seconds`` runs from process start to the last completion (the worker's
start-up included); ``steady_seconds`` from the first completion to the last.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

from bench import hub, load
from bench.backends import Backend, Snapshot, new_backend
from bench.context import Context
from bench.procs import PYTHON, Proc
from bench.procs import run as run_command
from bench.stats import ratio, summary

POLL_SECONDS = 0.1


def _rss_mib(pids: list[int]) -> float:
    """Resident memory of processes and their children, in MiB."""
    try:
        import psutil
    except ImportError:  # /proc fallback, the processes only
        total = 0
        for pid in pids:
            try:
                for line in open(f"/proc/{pid}/status"):  # noqa: SIM115
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            except OSError:
                pass
        return total / 2**20
    total = 0
    for pid in pids:
        try:
            p = psutil.Process(pid)
            total += p.memory_info().rss
            total += sum(c.memory_info().rss for c in p.children(recursive=True))
        except psutil.Error:
            pass
    return total / 2**20


def build_backlog(ctx: Context, kind: str, n: int, sink_port: int) -> tuple[Snapshot, str]:
    """A database holding ``n`` RECEIVED SMS notifications for a Twilio-routed tenant."""
    backend = new_backend(kind, ctx.workdir, f"drain{secrets.token_hex(2)}")
    tenant = "drain"
    key = hub.create_tenant(ctx, backend, tenant)
    hub.use_twilio_sink(ctx, backend, tenant, sink_port)
    port = hub.start_api(ctx, backend, "drain-fill-api")
    t0 = time.monotonic()
    try:
        filled = load.fill(
            f"http://127.0.0.1:{port}",
            count=n,
            concurrency=32,
            headers=hub.auth_headers(tenant, key, "US"),
            body=hub.SMS_US,
        )
    finally:
        hub.stop(ctx, "drain-fill-api")
    counts = backend.status_counts()
    if counts.get("RECEIVED") != n:
        raise RuntimeError(f"backlog has {counts}, expected {n} RECEIVED ({filled})")
    ctx.log(f"drain {kind}: backlog of {n} built in {time.monotonic() - t0:.1f} s")
    return backend.snapshot(), tenant


def _wait_done(
    backend: Backend, n: int, procs: list[Proc], timeout: float
) -> tuple[dict[str, int], float]:
    """Poll the database until ``n`` notifications are finished; (counts, peak RSS MiB)."""
    deadline = time.monotonic() + timeout
    peak = 0.0
    while True:
        counts = backend.status_counts()
        peak = max(peak, _rss_mib([p.pid for p in procs]))
        if counts.get("DONE", 0) + counts.get("FAILED", 0) >= n:
            return counts, peak
        if time.monotonic() > deadline:
            raise TimeoutError(f"drain not finished after {timeout:.0f} s: {counts}")
        for p in procs:
            if not p.alive():
                raise RuntimeError(f"{p.name} exited:\n{p.tail()}")
        time.sleep(POLL_SECONDS)


def drain_hub(
    ctx: Context,
    snapshot: Snapshot,
    n: int,
    workers: int,
    sink_port: int,
    label: str,
    *,
    prepare: Callable[[Backend], None] | None = None,
    observe: Callable[[Backend], dict[str, Any]] | None = None,
    stop_timeout: float = 15.0,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Start ``workers`` worker processes on a copy of the backlog; time them.

    ``prepare`` changes the copy before the workers start (not timed);
    ``observe`` adds what it reads the moment the drain is finished; ``env``
    adds to the workers' environment."""
    backend = snapshot.restore(label)
    if prepare is not None:
        prepare(backend)
    before = hub.sink_posts(sink_port)
    concurrency = ctx.settings.drain_concurrency
    procs = [
        hub.start_worker(ctx, backend, f"{label}-{i}", concurrency, env=env) for i in range(workers)
    ]
    started = min(p.started_at for p in procs)
    seen: dict[str, Any] = {}
    try:
        counts, peak = _wait_done(backend, n, procs, timeout=max(120.0, n / 50))
        if observe is not None:
            seen = observe(backend)
        first, last = backend.finished_span()
    finally:
        for p in procs:
            p.stop(timeout=stop_timeout)
        backend.drop()
    if first is None or last is None:
        raise RuntimeError("the drain finished nothing")
    posts = hub.sink_posts(sink_port) - before
    return {
        "n": n,
        "done": counts.get("DONE", 0),
        "failed": counts.get("FAILED", 0),
        "sink_posts": posts,
        "seconds": last - started,
        "steady_seconds": last - first,
        "rate": n / (last - started),
        "steady_rate": (n - 1) / (last - first) if last > first else None,
        "peak_rss_mib": peak,
        **seen,
    }


def drain_bare(ctx: Context, n: int, sink_port: int) -> dict[str, Any]:
    """``bench.bare_loop``: the same POSTs with nothing else; the limit."""
    url = f"http://127.0.0.1:{sink_port}/2010-04-01/Accounts/{hub.ACCOUNT_SID}/Messages.json"
    args = ["--url", url, "-n", str(n), "--concurrency", str(ctx.settings.drain_concurrency)]
    result = hub.run_bare(ctx, "bare", "bench.bare_loop", args, sink_port)
    return {
        "n": n,
        "done": n - result["failures"],
        "failed": result["failures"],
        "sink_posts": result["posts"],
        "seconds": result["seconds"],
        "steady_seconds": result["steady_seconds"],
        "rate": n / result["seconds"],
        "steady_rate": (n - 1) / result["steady_seconds"],
    }


def drain_celery(
    ctx: Context, kind: str, n: int, pool: str, concurrency: int, sink_port: int
) -> dict[str, Any]:
    """The Celery + Redis peer on a fresh table of ``n`` rows; time its worker."""
    backend = new_backend(kind, ctx.workdir, f"celery{secrets.token_hex(2)}")
    target = str(getattr(backend, "path", "")) if kind == "sqlite" else backend.url
    queue = f"bench-peer-{secrets.token_hex(4)}"
    env = {
        "BENCH_CELERY_BROKER": "redis://127.0.0.1:6379/0",
        "BENCH_CELERY_QUEUE": queue,
        "BENCH_PEER_DB": target,
        "BENCH_SINK_URL": (
            f"http://127.0.0.1:{sink_port}/2010-04-01/Accounts/{hub.ACCOUNT_SID}/Messages.json"
        ),
    }
    try:
        run_command(
            [PYTHON, "-m", "bench.celery_peer", "prepare", str(n)], workdir=ctx.workdir, env=env
        )
        run_command(
            [PYTHON, "-m", "bench.celery_peer", "enqueue", str(n)], workdir=ctx.workdir, env=env
        )
        before = hub.sink_posts(sink_port)
        proc = Proc(
            f"celery-{pool}",
            [PYTHON, "-m", "celery", "-A", "bench.celery_peer", "worker", "--pool", pool,
             "--concurrency", str(concurrency), "-Q", queue, "--loglevel", "WARNING",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            workdir=ctx.workdir,
            env=env,
        )  # fmt: skip
        from bench import celery_peer

        deadline = time.monotonic() + max(300.0, n / 20)
        peak = 0.0
        try:
            while True:
                done, failed, first, last = celery_peer.progress(target)
                peak = max(peak, _rss_mib([proc.pid]))
                if done + failed >= n:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"celery drain not finished: {done}/{n}")
                if not proc.alive():
                    raise RuntimeError(f"celery worker exited:\n{proc.tail()}")
                time.sleep(POLL_SECONDS)
        finally:
            proc.stop()
        run_command([PYTHON, "-m", "bench.celery_peer", "purge"], workdir=ctx.workdir, env=env)
    finally:
        backend.drop()
    if first is None or last is None:
        raise RuntimeError("the celery drain finished nothing")
    return {
        "n": n,
        "done": done,
        "failed": failed,
        "sink_posts": hub.sink_posts(sink_port) - before,
        "seconds": last - proc.started_at,
        "steady_seconds": last - first,
        "rate": n / (last - proc.started_at),
        "steady_rate": (n - 1) / (last - first) if last > first else None,
        "peak_rss_mib": peak,
    }


def run_drain(ctx: Context, kind: str, n: int, worker_counts: tuple[int, ...]) -> dict[str, Any]:
    """Every variant, ``repeats`` times, interleaved; raw results and summaries."""
    s = ctx.settings
    sink, sink_port = hub.start_sink(ctx, f"sink-{kind}")
    raw: list[dict[str, Any]] = []
    snapshot: Snapshot | None = None
    try:
        snapshot, _ = build_backlog(ctx, kind, n, sink_port)
        variants = [f"hub-w{w}" for w in worker_counts] + ["bare"]
        variants += [f"celery-{pool}-{c}" for pool, c in s.celery_pools]
        for rep in range(s.repeats):
            for variant in variants:
                label = f"r{rep}{variant.replace('-', '')}"
                if variant.startswith("hub-w"):
                    workers = int(variant.removeprefix("hub-w"))
                    result = drain_hub(ctx, snapshot, n, workers, sink_port, label)
                elif variant == "bare":
                    result = drain_bare(ctx, n, sink_port)
                else:
                    _, pool, c = variant.split("-")
                    result = drain_celery(ctx, kind, n, pool, int(c), sink_port)
                result.update(variant=variant, repeat=rep)
                raw.append(result)
                ctx.log(
                    f"drain {kind} rep {rep} {variant:>18}: {result['rate']:8.1f}/s"
                    f" (steady {result['steady_rate'] or 0:8.1f}/s)"
                    f" done {result['done']}/{n} sink {result['sink_posts']}"
                )
    finally:
        sink.stop()
        if snapshot is not None:
            snapshot.drop()
    return {"backend": kind, "n": n, "raw": raw, "summary": summarize(raw, worker_counts)}


def summarize(raw: list[dict[str, Any]], worker_counts: tuple[int, ...]) -> dict[str, Any]:
    """Median and spread per variant, and per-repeat ratios against bare and Celery."""
    variants = sorted({r["variant"] for r in raw}, key=[r["variant"] for r in raw].index)
    out: dict[str, Any] = {"variants": {}, "ratios": {}}
    for v in variants:
        runs = [r for r in raw if r["variant"] == v]
        out["variants"][v] = {
            m: summary(r.get(m) for r in runs)
            for m in ("rate", "steady_rate", "seconds", "peak_rss_mib")
        }
    by_rep: dict[int, dict[str, dict[str, Any]]] = {}
    for r in raw:
        by_rep.setdefault(r["repeat"], {})[r["variant"]] = r
    celery = [v for v in variants if v.startswith("celery")]
    for w in worker_counts:
        h = f"hub-w{w}"
        for metric in ("rate", "steady_rate"):
            vs_bare = [ratio(reps[h][metric], reps["bare"][metric]) for reps in by_rep.values()]
            # Against the best Celery configuration of the same repetition.
            vs_celery = [
                ratio(reps[h][metric], max((reps[c][metric] or 0) for c in celery))
                for reps in by_rep.values()
                if celery
            ]
            out["ratios"][f"{h}/bare/{metric}"] = summary(vs_bare)
            out["ratios"][f"{h}/celery/{metric}"] = summary(vs_celery)
    return out


def run(ctx: Context, kind: str) -> dict[str, Any]:
    """Scenario 2 (SQLite, one worker) or 5 (PostgreSQL, 1/2/4 workers)."""
    s = ctx.settings
    if kind == "sqlite":
        return run_drain(ctx, kind, s.drain_n, (1,))
    return run_drain(ctx, kind, s.pg_drain_n, s.pg_workers)
