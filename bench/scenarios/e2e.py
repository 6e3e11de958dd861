"""Scenario 3: end-to-end latency from 202 to DONE under a sustained offered load.

The hub runs as ``ihub serve`` (API and worker in one process, the embedded
deployment) and, in full mode, as ``ihub api`` + ``ihub worker`` (two
processes on the same file). An open-loop generator offers 25, 50 and 75 % of
the ingest maximum measured by scenario 1 (shipped hub, best concurrency),
each for a fixed duration after a warm-up. The latency of a notification is
``finished_at - created_at`` as the hub recorded them, for every notification
created inside the measured window; the run waits for all of them to finish.
"""

from __future__ import annotations

import time
from typing import Any

from bench import hub, load
from bench.backends import Backend, new_backend
from bench.context import Context
from bench.stats import percentile, summary

DEFAULT_MAX_RPS = 500.0  # when scenario 1 did not run


def ingest_max(ctx: Context) -> tuple[float, str]:
    """The shipped hub's best median ingest rate from scenario 1, and where it came from."""
    ingest = ctx.results.get("ingest") or {}
    best = 0.0
    for point in ingest.get("points", []):
        rps = point["hub"]["rps"]["median"]
        if rps:
            best = max(best, rps)
    if best:
        return best, "scenario 1, shipped hub, best concurrency"
    return DEFAULT_MAX_RPS, "default (scenario 1 not run)"


def _wait_finished(backend: Backend, lo: float, hi: float) -> tuple[list[Any], int]:
    """Rows created in [lo, hi) once all are finished (or after a minute); (rows, pending)."""
    deadline = time.monotonic() + 60
    while True:
        rows = backend.fetch(
            "SELECT status, created_at, finished_at FROM notifications"
            " WHERE created_at >= ? AND created_at < ?",
            lo,
            hi,
        )
        pending = sum(1 for r in rows if r[0] not in ("DONE", "FAILED"))
        if not pending or time.monotonic() > deadline:
            return rows, pending
        time.sleep(0.2)


def measure(ctx: Context, deployment: str, max_rps: float, rep: int) -> list[dict[str, Any]]:
    """One deployment at each offered rate in turn, on one fresh database."""
    s = ctx.settings
    backend = new_backend("sqlite", ctx.workdir, f"e2e{rep}{deployment.replace('+', '')}")
    sink, sink_port = hub.start_sink(ctx, "sink-e2e")
    tenant = "e2e"
    key = hub.create_tenant(ctx, backend, tenant)
    hub.use_twilio_sink(ctx, backend, tenant, sink_port)
    worker = None
    results = []
    try:
        if deployment == "serve":
            port = hub.start_api(ctx, backend, "e2e-serve", serve=True)
        else:
            port = hub.start_api(ctx, backend, "e2e-api")
            worker = hub.start_worker(ctx, backend, "e2e-worker", 32)
        for fraction in s.e2e_fractions:
            rate = max_rps * fraction
            client = load.open_loop(
                f"http://127.0.0.1:{port}",
                rate=rate,
                warmup=s.warmup_s,
                duration=s.e2e_duration_s,
                headers=hub.auth_headers(tenant, key, "US"),
                body=hub.SMS_US,
            )
            rows, pending = _wait_finished(
                backend, client["measure_from_epoch"], client["measure_to_epoch"]
            )
            latencies = [(r[2] - r[1]) * 1000 for r in rows if r[0] == "DONE"]
            accepted = client["statuses"].get("202", 0)
            result = {
                "deployment": deployment,
                "fraction": fraction,
                "offered_rps": rate,
                "repeat": rep,
                "accepted_rps": accepted / s.e2e_duration_s,
                "client_errors": client["requests"] - accepted,
                "ingest_p50_ms": client["p50_ms"],
                "ingest_p99_ms": client["p99_ms"],
                "measured": len(rows),
                "done": len(latencies),
                "unfinished": pending,
                "e2e_p50_ms": percentile(latencies, 50),
                "e2e_p90_ms": percentile(latencies, 90),
                "e2e_p99_ms": percentile(latencies, 99),
                "e2e_max_ms": max(latencies) if latencies else None,
            }
            results.append(result)
            ctx.log(
                f"e2e rep {rep} {deployment:>10} {fraction:4.0%} of {max_rps:.0f}:"
                f" accepted {result['accepted_rps']:7.1f}/s"
                f" e2e p50 {result['e2e_p50_ms'] or 0:7.1f} ms"
                f" p99 {result['e2e_p99_ms'] or 0:7.1f} ms"
                f" unfinished {result['unfinished']}"
            )
    finally:
        hub.stop(ctx, "e2e-serve")
        hub.stop(ctx, "e2e-api")
        if worker is not None:
            worker.stop()
        sink.stop()
        backend.drop()
    return results


def run(ctx: Context) -> dict[str, Any]:
    """Every deployment at every fraction of the ingest maximum, ``repeats`` times."""
    s = ctx.settings
    max_rps, source = ingest_max(ctx)
    raw = []
    for rep in range(s.repeats):
        for deployment in s.e2e_deployments:
            raw += measure(ctx, deployment, max_rps, rep)
    points = []
    for deployment in s.e2e_deployments:
        for fraction in s.e2e_fractions:
            runs = [r for r in raw if r["deployment"] == deployment and r["fraction"] == fraction]
            point: dict[str, Any] = {"deployment": deployment, "fraction": fraction}
            for m in (
                "offered_rps",
                "accepted_rps",
                "ingest_p50_ms",
                "ingest_p99_ms",
                "e2e_p50_ms",
                "e2e_p90_ms",
                "e2e_p99_ms",
                "unfinished",
                "client_errors",
            ):
                point[m] = summary(r[m] for r in runs)
            points.append(point)
    return {"ingest_max_rps": max_rps, "ingest_max_source": source, "raw": raw, "points": points}
