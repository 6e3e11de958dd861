"""The peer: the same drain as a Celery + Redis pipeline, the way many teams build it.

One task per notification: load the row from a table, call the sink with a
fast synchronous HTTP client (a pooled ``urllib3.PoolManager``), mark the row
done with its finish time. Redis is the broker; there is no result backend.
The table lives in a SQLite file or a PostgreSQL database, like the hub's
state (``BENCH_PEER_DB`` is a file path or a ``postgresql://`` URL).

The harness uses :func:`prepare` and :func:`enqueue` to build the backlog with
no worker running, then starts ``celery -A bench.celery_peer worker`` and times
it until every row is done. Configuration comes from the environment:
``BENCH_CELERY_BROKER``, ``BENCH_CELERY_QUEUE``, ``BENCH_PEER_DB``,
``BENCH_SINK_URL``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sqlite3
import threading
import time
from typing import Any

import urllib3
from celery import Celery

BROKER = os.environ.get("BENCH_CELERY_BROKER", "redis://127.0.0.1:6379/0")
QUEUE = os.environ.get("BENCH_CELERY_QUEUE", "bench-peer")

app = Celery("bench_peer", broker=BROKER)
app.conf.update(
    task_default_queue=QUEUE,
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    worker_send_task_events=False,
)

_AUTH = "Basic " + base64.b64encode(b"AC00000000000000000000000000000000:x").decode()
_local = threading.local()
_http = urllib3.PoolManager(maxsize=64, block=False, retries=False)


class _PgSync:
    """One asyncpg connection driven synchronously on this thread's own event loop."""

    def __init__(self, url: str) -> None:
        import asyncpg

        self.loop = asyncio.new_event_loop()
        self.conn = self.loop.run_until_complete(asyncpg.connect(url))

    def fetchrow(self, sql: str, *args: Any) -> Any:
        return self.loop.run_until_complete(self.conn.fetchrow(sql, *args))

    def execute(self, sql: str, *args: Any) -> Any:
        return self.loop.run_until_complete(self.conn.execute(sql, *args))

    def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> Any:
        return self.loop.run_until_complete(self.conn.executemany(sql, rows))

    def close(self) -> None:
        self.loop.run_until_complete(self.conn.close())
        self.loop.close()


def _is_pg(target: str) -> bool:
    return target.startswith(("postgres://", "postgresql://"))


def _sqlite(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def _connection() -> Any:
    conn = getattr(_local, "conn", None)
    if conn is None:
        target = os.environ["BENCH_PEER_DB"]
        conn = _PgSync(target) if _is_pg(target) else _sqlite(target)
        _local.conn = conn
    return conn


@app.task(name="bench.deliver", ignore_result=True)
def deliver(item_id: int) -> None:
    """Load one row, send it to the sink, mark it done."""
    conn = _connection()
    if isinstance(conn, _PgSync):
        row = conn.fetchrow("SELECT recipient, body FROM peer_items WHERE id = $1", item_id)
        recipient, body = row["recipient"], row["body"]
    else:
        recipient, body = conn.execute(
            "SELECT recipient, body FROM peer_items WHERE id = ?", (item_id,)
        ).fetchone()
    response = _http.request(
        "POST",
        os.environ["BENCH_SINK_URL"],
        fields={"To": recipient, "Body": body, "From": "+15005550006"},
        encode_multipart=False,
        headers={"Accept": "application/json", "Authorization": _AUTH},
    )
    sid = json.loads(response.data).get("sid") if response.status == 201 else None
    status = "DONE" if sid else "FAILED"
    if isinstance(conn, _PgSync):
        conn.execute(
            "UPDATE peer_items SET status = $1, sid = $2, finished_at = $3 WHERE id = $4",
            status,
            sid,
            time.time(),
            item_id,
        )
    else:
        conn.execute(
            "UPDATE peer_items SET status = ?, sid = ?, finished_at = ? WHERE id = ?",
            (status, sid, time.time(), item_id),
        )


_SCHEMA = (
    "CREATE TABLE peer_items (id INTEGER PRIMARY KEY, recipient TEXT NOT NULL,"
    " body TEXT NOT NULL, status TEXT NOT NULL, sid TEXT, finished_at {real})"
)


def prepare(target: str, n: int) -> None:
    """Create the table with ``n`` pending rows (dropping an earlier one)."""
    rows = [(i, "+12025550123", f"bench {i}", "PENDING") for i in range(n)]
    if _is_pg(target):
        pg = _PgSync(target)
        try:
            pg.execute("DROP TABLE IF EXISTS peer_items")
            pg.execute(_SCHEMA.format(real="double precision"))
            pg.executemany(
                "INSERT INTO peer_items (id, recipient, body, status) VALUES ($1, $2, $3, $4)",
                rows,
            )
        finally:
            pg.close()
        return
    conn = _sqlite(target)
    try:
        conn.execute("DROP TABLE IF EXISTS peer_items")
        conn.execute(_SCHEMA.format(real="REAL"))
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO peer_items (id, recipient, body, status) VALUES (?, ?, ?, ?)", rows
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


def progress(target: str) -> tuple[int, int, float | None, float | None]:
    """(done, failed, first finish, last finish) of the table."""
    sql = (
        "SELECT COALESCE(SUM(CASE WHEN status = 'DONE' THEN 1 ELSE 0 END), 0),"
        " COALESCE(SUM(CASE WHEN status = 'FAILED' THEN 1 ELSE 0 END), 0),"
        " MIN(finished_at), MAX(finished_at) FROM peer_items"
    )
    if _is_pg(target):
        pg = _PgSync(target)
        try:
            r = pg.fetchrow(sql)
        finally:
            pg.close()
        return int(r[0]), int(r[1]), r[2], r[3]
    conn = _sqlite(target)
    try:
        r = conn.execute(sql).fetchone()
    finally:
        conn.close()
    return int(r[0]), int(r[1]), r[2], r[3]


def enqueue(n: int) -> None:
    """Send ``n`` tasks (one per row) to the broker, with no worker running."""
    app.control.purge()
    with app.producer_or_acquire() as producer:
        for i in range(n):
            deliver.apply_async((i,), producer=producer)


def purge() -> None:
    """Drop whatever is left in the queue, and the broker keys kombu keeps for it."""
    app.control.purge()
    import redis

    client = redis.Redis.from_url(BROKER)
    try:
        keys = [f"_kombu.binding.{QUEUE}", f"_kombu.binding_permanent.{QUEUE}", QUEUE]
        client.delete(*keys)
        deadlines = "_kombu.binding_deadlines"
        ours = (QUEUE.encode(), b"celery.pidbox")
        stale = [m for m in client.zrange(deadlines, 0, -1) if any(o in m for o in ours)]
        if stale:
            client.zrem(deadlines, *stale)
        if not client.zcard(deadlines):
            client.delete(deadlines)
    finally:
        client.close()


def main() -> None:
    """``python -m bench.celery_peer prepare|enqueue|purge N`` (used by the harness)."""
    import sys

    command, *rest = sys.argv[1:]
    if command == "prepare":
        prepare(os.environ["BENCH_PEER_DB"], int(rest[0]))
    elif command == "enqueue":
        enqueue(int(rest[0]))
    elif command == "purge":
        purge()
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main()
