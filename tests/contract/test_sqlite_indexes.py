"""SQLite: the receipt and suppression queries are answered from their indexes.

The counterpart of test_postgres_indexes.py for what issue 15 added: EXPLAIN
QUERY PLAN of the adapter's own statements (compiled, not copied) on a
migrated file with a few thousand rows, after ANALYZE. A query that stops
matching its index, or an index gone missing, makes the plan a SCAN.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from integration_hub.adapters.sql import statements as q
from integration_hub.adapters.sql.dialect import SQLITE, Statement
from integration_hub.adapters.sqlite.database import SqliteDatabase

ROWS = 5000
NOW = time.time()
STATES = ["sent", "delivered", "delivered", "read", "bounced", "delivered", "expired"]


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sqlite3.Connection]:
    """A migrated file: many tenants' notifications, most sent and answered, analysed."""
    path: Path = tmp_path_factory.mktemp("indexes") / "hub.db"

    async def migrate() -> None:
        db = SqliteDatabase(path)
        try:
            await db.migrate()
        finally:
            db.close()

    asyncio.run(migrate())
    conn = sqlite3.connect(path)
    conn.executemany(
        "INSERT INTO notifications (id, tenant, country, channel, provider, status, request,"
        " idempotency_key, created_at, updated_at, finished_at, delivery_state, sent_at,"
        " delivery_updated_at, provider_message_id)"
        " VALUES (?, ?, 'ES', 'email', 'ses', 'DONE', '{}', ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                f"{i:012x}",
                f"t{i % 100}",
                f"k{i}",
                NOW - ROWS + i,
                NOW - ROWS + i,
                NOW - ROWS + i,
                STATES[i % len(STATES)] if i % 3 else None,
                NOW - ROWS + i if i % 3 else None,
                NOW - ROWS + i if i % 3 else None,
                f"ses-{i}" if i % 3 else None,
            )
            for i in range(ROWS)
        ],
    )
    conn.executemany(
        "INSERT INTO delivery_events (notification_id, provider, state, raw_status,"
        " received_at, identity) VALUES (?, 'ses', 'delivered', 'Delivery', ?, ?)",
        [(f"{i:012x}", NOW, f'["{i}"]') for i in range(0, ROWS, 2)],
    )
    conn.executemany(
        "INSERT INTO suppressions (tenant, channel, address, reason, created_at)"
        " VALUES (?, 'email', ?, 'hard_bounce', ?)",
        [(f"t{i % 100}", f"u{i}@example.com", NOW) for i in range(ROWS)],
    )
    conn.commit()
    conn.execute("ANALYZE")
    try:
        yield conn
    finally:
        conn.close()


def case(name: str, statement: Statement, index: str, **params: Any) -> Any:
    """A statement, its parameters, and what its plan must search (``INDEX name``)."""
    return pytest.param(statement, params, index, id=name)


CASES = [
    case(
        "a receipt's notification",
        q.RECEIPT_TARGET,
        "INDEX notifications_provider_message",
        tenant="t7",
        provider="ses",
        provider_message_id="ses-107",
    ),
    case(
        "due for expiry", q.EXPIRY_DUE, "INDEX notifications_delivery_expiry", cutoff=NOW, limit=100
    ),
    case(
        "list by delivery state",
        q.listing(status=False, country=False, before=False, delivery=True),
        "INDEX notifications_tenant_delivery",
        tenant="t7",
        delivery_state="bounced",
        limit=50,
    ),
    case(
        "a notification's events",
        q.DELIVERY_EVENTS,
        "INDEX sqlite_autoindex_delivery_events_1",
        id="000000000064",
        tenant="t0",
        limit=100,
    ),
    case(
        "a suppression",
        q.SUPPRESSION,
        "PRIMARY KEY",
        tenant="t7",
        channel="email",
        address="u7@example.com",
    ),
    case(
        "suppressions of a tenant",
        q.suppression_listing(channel=False, after=True),
        "PRIMARY KEY",
        tenant="t7",
        after_channel="email",
        after_address="u7@example.com",
        limit=100,
    ),
]


@pytest.mark.parametrize(("statement", "params", "index"), CASES)
def test_the_query_is_answered_from_its_index(
    filled: sqlite3.Connection, statement: Statement, params: dict[str, Any], index: str
) -> None:
    compiled = SQLITE.compile(statement)
    plan = "\n".join(
        str(r[3]) for r in filled.execute("EXPLAIN QUERY PLAN " + compiled.sql, params)
    )
    assert re.search(rf"^SEARCH \w+ USING (COVERING )?{index}\b", plan, re.M), plan
    assert not re.search(r"^SCAN ", plan, re.M), plan
