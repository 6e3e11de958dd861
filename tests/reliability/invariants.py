"""The invariant checker: what clients were told, reconciled with what happened.

A reliability run keeps a :class:`Ledger` of every answer its clients saw, then
reads :class:`Facts` from the hub's database (and the provider's delivery
log) and calls :func:`check`. The rules, each with its own violation kind:

``lost``
    an id answered 202 does not exist.
``not_finished``
    an acknowledged notification is not DONE or FAILED after the run drained.
``not_dead_lettered``
    a FAILED notification has no dead letter.
``duplicated_done``
    a notification has more than one delivered attempt (DONE twice).
``done_without_delivery``
    DONE, but the provider never received it (or no attempt says delivered).
``extra_delivery``
    the provider received it more often than attempts were recorded, or more
    than once outside the crash window (one extra delivery is allowed per
    *ambiguous* attempt: abandoned by a killed worker, or timed out while the
    provider may still have accepted it).
``unacknowledged``
    a notification exists that no client was acknowledged, and whose client
    never saw an error it could retry (a retry could have been its 202).
``two_ids_for_one_key``
    one Idempotency-Key was answered with two ids, or made two notifications.
``over_budget``
    more attempts than the attempt budget allows.
``event_mismatch``
    the notification's webhook events (the outbox, ADR 0021) are not exactly
    one per committed status change: one ``accepted`` first, one ``done`` if
    DONE, one ``failed`` or ``dead_lettered`` per time it ended FAILED (each
    ``redriven`` undoes one), and one ``retrying`` per recorded attempt that
    did not end it.
``webhook_undelivered``
    an event no receiver verified (checked when the run had a receiver).

A checker that cannot fail is worthless: tests/reliability/test_invariants.py
proves that each kind is detected.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pg

TERMINAL = frozenset({"DONE", "FAILED"})
CHECKER = "ihub-reliability-checker"  # application_name of the checker's PostgreSQL sessions
# Attempts after which the provider may have received the message although
# the hub never learned it: the documented crash window (docs/reliability.md).
# A timeout or a connection lost after the request was sent leaves the
# outcome unknown; so does a provider adapter that raised (the sandbox's
# outbox write may commit while the database connection drops).
AMBIGUOUS_ERRORS = frozenset({"timeout", "connection_error", "unexpected_error"})


@dataclass
class Ledger:
    """What the clients were told, by Idempotency-Key."""

    acknowledged: dict[str, str] = field(default_factory=dict)  # key -> id answered 202
    answers: Counter[str] = field(default_factory=Counter)  # key -> 202 answers seen
    retryable: set[str] = field(default_factory=set)  # keys that saw a retryable error
    conflicting: dict[str, set[str]] = field(default_factory=dict)  # key -> other ids
    requests: int = 0
    replays: int = 0  # 202 answers marked Idempotent-Replayed
    errors: Counter[str] = field(default_factory=Counter)  # status code or error name

    def accepted(self, key: str, notification_id: str) -> None:
        """A 202 (first answer or replay) for ``key``."""
        self.requests += 1
        self.answers[key] += 1
        first = self.acknowledged.setdefault(key, notification_id)
        if first != notification_id:
            self.conflicting.setdefault(key, set()).add(notification_id)

    def retryable_error(self, key: str, what: str) -> None:
        """An answer the client may retry (503, 429, 409, a dropped connection)."""
        self.requests += 1
        self.retryable.add(key)
        self.errors[what] += 1


@dataclass(frozen=True)
class Row:
    """One notification as stored, with its attempts' outcomes (None: abandoned)."""

    id: str
    key: str
    status: str
    outcomes: tuple[str | None, ...] = ()
    error_classes: tuple[str | None, ...] = ()

    @property
    def ambiguous(self) -> int:
        """Attempts that may have reached the provider without the hub learning it."""
        return sum(
            1
            for outcome, error in zip(self.outcomes, self.error_classes, strict=True)
            if outcome is None or outcome == "abandoned" or error in AMBIGUOUS_ERRORS
        )


@dataclass
class Facts:
    """What happened: the stored rows and the provider's deliveries."""

    rows: dict[str, Row] = field(default_factory=dict)
    dead_letters: set[str] = field(default_factory=set)
    deliveries: Counter[str] = field(default_factory=Counter)  # id -> provider deliveries
    # id -> its webhook events (event id, type) in commit order; None: not read.
    events: dict[str, list[tuple[str, str]]] | None = None
    # The webhook-ids a receiver verified; None: the run had no receiver.
    webhooks_received: set[str] | None = None


def event_problem(row: Row, types: list[str]) -> str | None:
    """Why ``types`` (a notification's webhook event types, in order) are not exactly one
    per committed change of ``row``, or None."""
    counts = Counter(t.removeprefix("notification.") for t in types)
    recorded = sum(1 for o in row.outcomes if o not in (None, "abandoned"))
    ended_failed = counts["failed"] + counts["dead_lettered"]
    if not types or types[0] != "notification.accepted" or counts["accepted"] != 1:
        return f"not one accepted first: {types}"
    if counts["done"] != (1 if row.status == "DONE" else 0):
        return f"{counts['done']} done for {row.status}: {types}"
    if ended_failed != counts["redriven"] + (1 if row.status == "FAILED" else 0):
        return f"{ended_failed} failures, {counts['redriven']} redrives, {row.status}: {types}"
    # A completion that dead-letters records an attempt too: the bound allows it.
    most = recorded - counts["done"] - counts["failed"]
    if not most - counts["dead_lettered"] <= counts["retrying"] <= most:
        return f"{counts['retrying']} retrying for {recorded} recorded attempts: {types}"
    return None


@dataclass(frozen=True)
class Violation:
    """One broken invariant."""

    kind: str
    notification_id: str
    detail: str


@dataclass
class Report:
    """The outcome of :func:`check`, with the numbers docs/reliability.md reports."""

    violations: list[Violation]
    acknowledged: int
    notifications: int
    deliveries: int
    crash_window_duplicates: int
    statuses: Counter[str]

    def kinds(self) -> set[str]:
        """The kinds of violation found."""
        return {v.kind for v in self.violations}

    def count(self, *kinds: str) -> int:
        """How many violations of these kinds."""
        return sum(1 for v in self.violations if v.kind in kinds)

    def summary(self) -> dict[str, int]:
        """lost / duplicated / wrong state, as the reliability report tabulates them."""
        return {
            "acknowledged": self.acknowledged,
            "lost": self.count("lost"),
            "duplicated": self.count("duplicated_done", "extra_delivery", "two_ids_for_one_key"),
            "wrong_state": self.count(
                "not_finished",
                "not_dead_lettered",
                "done_without_delivery",
                "unacknowledged",
                "over_budget",
                "event_mismatch",
                "webhook_undelivered",
            ),
            "crash_window_duplicates": self.crash_window_duplicates,
        }

    def assert_ok(self) -> None:
        """Fail with the first violations when there are any."""
        if self.violations:
            shown = "\n".join(
                f"  {v.kind}: {v.notification_id}: {v.detail}" for v in self.violations[:20]
            )
            raise AssertionError(f"{len(self.violations)} invariant violations:\n{shown}")


def check(ledger: Ledger, facts: Facts, *, budget: int) -> Report:
    """Reconcile ``ledger`` with ``facts``; every broken rule becomes a violation."""
    found: list[Violation] = []
    add = found.append
    for key, others in ledger.conflicting.items():
        add(Violation("two_ids_for_one_key", ledger.acknowledged[key], f"key {key!r}: {others}"))
    for key, nid in ledger.acknowledged.items():
        if nid not in facts.rows:
            add(Violation("lost", nid, f"answered 202 for key {key!r}, not stored"))
    by_key: dict[str, list[str]] = {}
    extra_in_window = 0
    for nid, row in facts.rows.items():
        by_key.setdefault(row.key, []).append(nid)
        if row.key not in ledger.acknowledged and row.key not in ledger.retryable:
            add(Violation("unacknowledged", nid, f"key {row.key!r} was never answered 202"))
        if row.status not in TERMINAL:
            add(Violation("not_finished", nid, f"ended {row.status}"))
        if row.status == "FAILED" and nid not in facts.dead_letters:
            add(Violation("not_dead_lettered", nid, "FAILED without a dead letter"))
        if len(row.outcomes) > budget:
            add(Violation("over_budget", nid, f"{len(row.outcomes)} attempts, budget {budget}"))
        delivered = row.outcomes.count("delivered")
        if delivered > 1 or (delivered and row.status != "DONE"):
            add(Violation("duplicated_done", nid, f"{delivered} delivered attempts, {row.status}"))
        sent = facts.deliveries.get(nid, 0)
        if row.status == "DONE" and (delivered == 0 or sent == 0):
            add(Violation("done_without_delivery", nid, f"{sent} deliveries"))
        expected = 1 if row.status == "DONE" else 0
        if sent > len(row.outcomes):
            add(
                Violation(
                    "extra_delivery", nid, f"{sent} deliveries > {len(row.outcomes)} attempts"
                )
            )
        elif sent > expected + row.ambiguous:
            add(
                Violation(
                    "extra_delivery",
                    nid,
                    f"{sent} deliveries for {row.status}, {row.ambiguous} ambiguous attempts",
                )
            )
        elif sent > expected:
            extra_in_window += sent - expected
        if facts.events is not None:
            events = facts.events.get(nid, [])
            problem = event_problem(row, [t for _, t in events])
            if problem:
                add(Violation("event_mismatch", nid, problem))
            if facts.webhooks_received is not None:
                missing = [t for i, t in events if i not in facts.webhooks_received]
                if missing:
                    add(Violation("webhook_undelivered", nid, f"never received: {missing}"))
    for key, ids in by_key.items():
        if len(ids) > 1:
            add(Violation("two_ids_for_one_key", ids[0], f"key {key!r} made {len(ids)} rows"))
    for nid in set(facts.deliveries) - set(facts.rows):
        add(Violation("extra_delivery", nid, "delivered, but no such notification"))
    return Report(
        violations=found,
        acknowledged=len(ledger.acknowledged),
        notifications=len(facts.rows),
        deliveries=sum(facts.deliveries.values()),
        crash_window_duplicates=extra_in_window,
        statuses=Counter(r.status for r in facts.rows.values()),
    )


_NOTIFICATIONS = "SELECT id, idempotency_key, status FROM notifications"
_ATTEMPTS = (
    "SELECT notification_id, number, outcome, error_class FROM attempts"
    " ORDER BY notification_id, number"
)
_DEAD = "SELECT notification_id FROM dead_letters"
_EVENTS = (
    "SELECT notification_id, id, type FROM webhook_events"
    " WHERE notification_id IS NOT NULL ORDER BY seq"
)
_OUTBOX = "SELECT notification_id FROM outbox"


def _assemble(
    notifications: list[Any],
    attempts: list[Any],
    dead: list[Any],
    events: list[Any],
    outbox: list[Any] | None,
) -> Facts:
    outcomes: dict[str, list[tuple[str | None, str | None]]] = {}
    for a in attempts:
        outcomes.setdefault(a[0], []).append((a[2], a[3]))
    facts = Facts(dead_letters={r[0] for r in dead}, events={})
    assert facts.events is not None
    for nid, event_id, type_ in events:
        facts.events.setdefault(nid, []).append((event_id, type_))
    for nid, key, status in notifications:
        pairs = outcomes.get(nid, [])
        facts.rows[nid] = Row(
            nid, key, status, tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)
        )
    if outbox is not None:
        facts.deliveries = Counter(r[0] for r in outbox)
    return facts


def read_facts(database_url: str, *, sandbox_outbox: bool = True) -> Facts:
    """The stored facts of a SQLite or PostgreSQL hub (deliveries from its sandbox outbox)."""
    queries = [_NOTIFICATIONS, _ATTEMPTS, _DEAD, _EVENTS] + ([_OUTBOX] if sandbox_outbox else [])
    if database_url.startswith("sqlite:"):
        conn = sqlite3.connect(database_url.removeprefix("sqlite:///"))
        try:
            results = [conn.execute(q).fetchall() for q in queries]
        finally:
            conn.close()
    else:
        import asyncpg  # type: ignore[import-untyped]

        async def fetch() -> list[list[Any]]:
            # Named, so that scenarios that kill the hub's sessions spare the checker's.
            conn = await asyncpg.connect(
                database_url, server_settings={"application_name": CHECKER}
            )
            try:
                return [[tuple(r) for r in await conn.fetch(q)] for q in queries]
            finally:
                await conn.close()

        results = pg.run_sync(fetch())
    outbox = results[4] if sandbox_outbox else None
    return _assemble(results[0], results[1], results[2], results[3], outbox)


def scale(count: int) -> int:
    """``count`` times IHUB_RELIABILITY_SCALE (1 in `make test`, larger in `make reliability`)."""
    return max(1, round(count * float(os.environ.get("IHUB_RELIABILITY_SCALE", "1"))))


def record(scenario: str, backend: str, report: Report, ledger: Ledger, faults: str) -> None:
    """Append one result line to IHUB_RELIABILITY_REPORT (a JSON-lines file), when set."""
    target = os.environ.get("IHUB_RELIABILITY_REPORT")
    line = {
        "scenario": scenario,
        "backend": backend,
        "requests": ledger.requests,
        "faults": faults,
        "retryable_errors": dict(ledger.errors),
        "notifications": report.notifications,
        "deliveries": report.deliveries,
        "statuses": dict(report.statuses),
        **report.summary(),
    }
    print(f"\nreliability {json.dumps(line)}")
    if target:
        with Path(target).open("a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")
