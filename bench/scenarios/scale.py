"""Scenario 4: the SQLite hub with 1,000 against 1,000,000 stored notifications.

A seed of real notifications goes through the real path (API, worker, Twilio
adapter, sink), so that every column holds what the hub writes. Bulk copies
of the seed rows (``sqlite3``, new time-ordered ids and keys, older
timestamps) then fill the file to the wanted size: 90 % DONE with their
attempt and idempotency rows, 10 % RECEIVED with a queue entry (the backlog).
Measured at each size: ingest throughput and ``GET /v1/notifications/{id}``
latency (the API bound as ``bench.nodelay`` binds it: TCP_NODELAY set
explicitly, so that a regression of the bind cannot hide the database), the file
size per million notifications, and the worker's memory while it works
through the backlog.
"""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

from bench import hub, load
from bench.backends import Snapshot, SqliteBackend, sqlite_backend
from bench.context import Context
from bench.procs import PYTHON, Proc, free_port, wait_http
from bench.scenarios.drain import _rss_mib
from bench.stats import summary

SEED = 500
BATCH = 50_000


def uuid7_at(millis: int) -> str:
    """A UUIDv7 string for the given Unix milliseconds (the hub's layout)."""
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


def build_seed(ctx: Context, sink_port: int) -> tuple[Snapshot, str, str]:
    """A database with ``SEED`` notifications delivered through the real path."""
    backend = sqlite_backend(ctx.workdir, "scale-seed")
    tenant = "scale"
    key = hub.create_tenant(ctx, backend, tenant)
    hub.use_twilio_sink(ctx, backend, tenant, sink_port)
    port = hub.start_api(ctx, backend, "scale-seed-api")
    try:
        load.fill(
            f"http://127.0.0.1:{port}",
            count=SEED,
            concurrency=16,
            headers=hub.auth_headers(tenant, key, "US"),
            body=hub.SMS_US,
        )
    finally:
        hub.stop(ctx, "scale-seed-api")
    worker = hub.start_worker(ctx, backend, "scale-seed-worker", 32)
    try:
        deadline = time.monotonic() + 120
        while backend.status_counts().get("DONE", 0) < SEED:
            if time.monotonic() > deadline:
                raise TimeoutError("the seed did not drain")
            time.sleep(0.2)
    finally:
        worker.stop()
    return backend.snapshot(), tenant, key


def _rows(conn: sqlite3.Connection, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    cur = conn.execute(sql)
    return [d[0] for d in cur.description], [tuple(r) for r in cur.fetchall()]


def _insert(table: str, columns: list[str]) -> str:
    """An INSERT of every column (names read from the schema the hub created)."""
    marks = ", ".join("?" * len(columns))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"  # noqa: S608


def bulk_fill(path: Path, total: int, backlog: int) -> float:
    """Grow the seeded file to ``total`` notifications, ``backlog`` of them queued."""
    t0 = time.monotonic()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    n_cols, seeds = _rows(conn, "SELECT * FROM notifications ORDER BY id")
    a_cols, attempts = _rows(conn, "SELECT * FROM attempts")
    k_cols, keys = _rows(conn, "SELECT * FROM idempotency_keys")
    by_id = {a[a_cols.index("notification_id")]: a for a in attempts}
    key_of = {k[k_cols.index("key")]: k for k in keys}
    ni = {c: i for i, c in enumerate(n_cols)}
    ai = {c: i for i, c in enumerate(a_cols)}
    ki = {c: i for i, c in enumerate(k_cols)}
    extra = total - len(seeds)
    done_extra = extra - backlog
    oldest = min(s[ni["created_at"]] for s in seeds)
    step = 0.05  # seconds between copies: a million spans about 14 hours
    insert_n = _insert("notifications", n_cols)
    insert_a = _insert("attempts", a_cols)
    insert_k = _insert("idempotency_keys", k_cols)
    insert_q = (
        "INSERT INTO queue (notification_id, tenant, available_at, enqueued_at, receive_count)"
        " VALUES (?, ?, ?, ?, 0)"
    )
    for start in range(0, extra, BATCH):
        ns, ats, ks, qs = [], [], [], []
        for i in range(start, min(extra, start + BATCH)):
            seed = seeds[i % len(seeds)]
            at = oldest - (extra - i) * step
            new_id = uuid7_at(int(at * 1000))
            row = list(seed)
            old_id = seed[ni["id"]]
            row[ni["id"]] = new_id
            row[ni["idempotency_key"]] = f"scale-{i}"
            row[ni["created_at"]] = at
            row[ni["updated_at"]] = at + 0.01
            if i < done_extra:
                row[ni["finished_at"]] = at + 0.01
                a = list(by_id[old_id])
                a[ai["notification_id"]] = new_id
                a[ai["started_at"]] = at + 0.005
                if "finished_at" in ai:
                    a[ai["finished_at"]] = at + 0.01
                ats.append(tuple(a))
            else:
                row[ni["status"]] = "RECEIVED"
                for col in ("finished_at", "claim_token", "claim_expires_at", "last_error"):
                    if col in ni:
                        row[ni[col]] = None
                row[ni["attempts_used"]] = 0
                row[ni["attempt_count"]] = 0
                qs.append((new_id, row[ni["tenant"]], at, at))
            ns.append(tuple(row))
            k = list(key_of[seed[ni["idempotency_key"]]])
            k[ki["key"]] = f"scale-{i}"
            if k[ki["response"]]:
                k[ki["response"]] = k[ki["response"]].replace(old_id, new_id)
            ks.append(tuple(k))
        conn.execute("BEGIN")
        conn.executemany(insert_n, ns)
        conn.executemany(insert_a, ats)
        conn.executemany(insert_k, ks)
        conn.executemany(insert_q, qs)
        conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return time.monotonic() - t0


def start_api_nodelay(ctx: Context, backend: SqliteBackend, name: str) -> int:
    """``ihub api`` through ``bench.nodelay`` on a free port."""
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


def measure_size(
    ctx: Context, seed: Snapshot, total: int, tenant: str, key: str, sink_port: int
) -> dict[str, Any]:
    """Everything scenario 4 measures at one size."""
    s = ctx.settings
    backlog = int(total * s.scale_backlog_fraction)
    backend = seed.restore(f"scale-{total}")
    assert isinstance(backend, SqliteBackend)
    fill_seconds = bulk_fill(backend.path, total, backlog)
    counts = backend.status_counts()
    size = backend.size_bytes()
    ctx.log(f"scale {total}: filled in {fill_seconds:.1f} s, {counts}, {size / 2**20:.1f} MiB")
    # The worker gets a copy of its own, untouched by the API tests' inserts.
    backend.close()
    worker_db = backend.path.with_name(f"scale-{total}-worker.db")
    shutil.copyfile(backend.path, worker_db)
    ids = [r[0] for r in backend.fetch("SELECT id FROM notifications WHERE status = 'DONE'")]
    ids_file = ctx.workdir / f"ids-{total}.txt"
    ids_file.write_text("\n".join(random.sample(ids, min(len(ids), 10_000))) + "\n")
    del ids
    result: dict[str, Any] = {
        "stored": total,
        "backlog": backlog,
        "counts": counts,
        "fill_seconds": fill_seconds,
        "db_bytes": size,
        "bytes_per_notification": size / total,
        "ingest": [],
        "get": [],
    }
    port = start_api_nodelay(ctx, backend, f"scale-api-{total}")
    base = f"http://127.0.0.1:{port}"
    try:
        for rep in range(s.repeats):
            r = load.closed_loop(
                base,
                tool=ctx.load_tool,
                concurrency=32,
                warmup=s.warmup_s,
                duration=s.duration_s,
                headers=hub.auth_headers(tenant, key, "ES"),
                body=hub.EMAIL_ES,
            )
            r["repeat"] = rep
            result["ingest"].append(r)
            ctx.log(f"scale {total} ingest c=32: {r['rps']:.1f} req/s p99 {r['p99_ms']:.1f} ms")
            for c in s.get_concurrency:
                g = load.closed_loop(
                    base,
                    tool=ctx.load_tool,
                    concurrency=c,
                    warmup=s.warmup_s,
                    duration=s.duration_s,
                    headers=hub.auth_headers(tenant, key),
                    path="/v1/notifications/",
                    ids_file=ids_file,
                    expect=200,
                )
                g["repeat"] = rep
                result["get"].append(g)
                ctx.log(
                    f"scale {total} GET c={c}: {g['rps']:.1f} req/s p50 {g['p50_ms']:.2f} ms"
                    f" p99 {g['p99_ms']:.2f} ms errors {g['errors']}"
                )
    finally:
        hub.stop(ctx, f"scale-api-{total}")
    backend.drop()
    # The worker on the backlog: memory over time, and how fast it goes.
    backend = SqliteBackend(worker_db)
    worker = hub.start_worker(ctx, backend, f"scale-worker-{total}", 32)
    samples = []
    try:
        t_end = time.monotonic() + s.scale_rss_seconds
        while time.monotonic() < t_end:
            samples.append(_rss_mib([worker.pid]))
            time.sleep(0.5)
    finally:
        worker.stop()
    done_after = backend.status_counts().get("DONE", 0) - counts.get("DONE", 0)
    result["worker"] = {
        "seconds": s.scale_rss_seconds,
        "rss_mib_samples": samples,
        "peak_rss_mib": max(samples) if samples else None,
        "drained": done_after,
        "rate": done_after / s.scale_rss_seconds,
    }
    ctx.log(
        f"scale {total} worker: peak RSS {result['worker']['peak_rss_mib']:.1f} MiB,"
        f" drained {done_after} in {s.scale_rss_seconds:.0f} s"
    )
    result["ingest_rps"] = summary(r["rps"] for r in result["ingest"])
    for c in s.get_concurrency:
        gets = [g for g in result["get"] if g["concurrency"] == c]
        result[f"get_c{c}"] = {
            m: summary(g[m] for g in gets) for m in ("rps", "p50_ms", "p99_ms", "p999_ms")
        }
    backend.drop()
    return result


def run(ctx: Context) -> dict[str, Any]:
    """Both sizes, from one seed."""
    sink, sink_port = hub.start_sink(ctx, "sink-scale")
    seed = None
    try:
        seed, tenant, key = build_seed(ctx, sink_port)
        sizes = [
            measure_size(ctx, seed, n, tenant, key, sink_port) for n in ctx.settings.scale_sizes
        ]
    finally:
        sink.stop()
        if seed is not None:
            seed.drop()
    return {"sizes": sizes}
