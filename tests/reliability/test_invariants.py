"""The invariant checker detects every violation it names (a checker that cannot fail
is worthless), on hand-made facts and on a real SQLite hub's tables."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from reliability.invariants import Facts, Ledger, Row, check, read_facts

BUDGET = 3


def healthy() -> tuple[Ledger, Facts]:
    """Three notifications, all accounted for: DONE, FAILED after retries, DONE after a crash."""
    ledger = Ledger()
    for key, nid in [("k1", "n1"), ("k2", "n2"), ("k3", "n3")]:
        ledger.accepted(key, nid)
    ledger.accepted("k1", "n1")  # a replay
    facts = Facts(
        rows={
            "n1": Row("n1", "k1", "DONE", ("delivered",), (None,)),
            "n2": Row("n2", "k2", "FAILED", ("transient",) * 3, ("http_503",) * 3),
            "n3": Row("n3", "k3", "DONE", (None, "delivered"), (None, None)),
        },
        dead_letters={"n2"},
        deliveries=Counter({"n1": 1, "n3": 2}),  # n3: delivered before its worker died
    )
    return ledger, facts


def test_a_healthy_run_has_no_violation_and_counts_the_crash_window() -> None:
    report = check(*healthy(), budget=BUDGET)
    report.assert_ok()
    assert report.crash_window_duplicates == 1
    assert report.summary()["lost"] == 0


def test_an_acknowledged_id_that_was_never_stored_is_lost() -> None:
    ledger, facts = healthy()
    del facts.rows["n1"]
    facts.deliveries.pop("n1")
    report = check(ledger, facts, budget=BUDGET)
    assert report.kinds() == {"lost"}
    assert report.summary()["lost"] == 1
    with pytest.raises(AssertionError, match="lost: n1"):
        report.assert_ok()


def test_two_delivered_attempts_are_a_duplicated_done() -> None:
    ledger, facts = healthy()
    facts.rows["n1"] = Row("n1", "k1", "DONE", ("delivered", "delivered"), (None, None))
    facts.deliveries["n1"] = 2
    assert "duplicated_done" in check(ledger, facts, budget=BUDGET).kinds()


def test_a_second_delivery_without_an_ambiguous_attempt_is_extra() -> None:
    ledger, facts = healthy()
    facts.rows["n1"] = Row("n1", "k1", "DONE", ("transient", "delivered"), ("http_503", None))
    facts.deliveries["n1"] = 2  # the 503 attempt cannot explain a delivery
    report = check(ledger, facts, budget=BUDGET)
    assert report.kinds() == {"extra_delivery"}
    assert report.summary()["duplicated"] == 1


def test_more_deliveries_than_attempts_is_extra() -> None:
    ledger, facts = healthy()
    facts.deliveries["n3"] = 3
    assert check(ledger, facts, budget=BUDGET).kinds() == {"extra_delivery"}


def test_a_delivery_of_a_failed_notification_outside_the_window_is_extra() -> None:
    ledger, facts = healthy()
    facts.deliveries["n2"] = 1
    assert check(ledger, facts, budget=BUDGET).kinds() == {"extra_delivery"}


def test_a_timed_out_attempt_may_explain_one_delivery() -> None:
    ledger, facts = healthy()
    facts.rows["n1"] = Row("n1", "k1", "DONE", ("transient", "delivered"), ("timeout", None))
    facts.deliveries["n1"] = 2
    report = check(ledger, facts, budget=BUDGET)
    report.assert_ok()
    assert report.crash_window_duplicates == 2  # this one and n3's


def test_done_that_the_provider_never_received_is_detected() -> None:
    ledger, facts = healthy()
    facts.deliveries.pop("n1")
    assert check(ledger, facts, budget=BUDGET).kinds() == {"done_without_delivery"}


def test_more_attempts_than_the_budget_is_detected() -> None:
    ledger, facts = healthy()
    facts.rows["n2"] = Row("n2", "k2", "FAILED", ("transient",) * 4, ("http_503",) * 4)
    assert check(ledger, facts, budget=BUDGET).kinds() == {"over_budget"}


def test_a_row_no_client_was_told_about_is_unacknowledged() -> None:
    ledger, facts = healthy()
    facts.rows["n4"] = Row("n4", "k4", "DONE", ("delivered",), (None,))
    facts.deliveries["n4"] = 1
    assert check(ledger, facts, budget=BUDGET).kinds() == {"unacknowledged"}


def test_a_row_whose_client_saw_a_retryable_error_is_not_unacknowledged() -> None:
    ledger, facts = healthy()
    ledger.retryable_error("k4", "ReadError")
    facts.rows["n4"] = Row("n4", "k4", "DONE", ("delivered",), (None,))
    facts.deliveries["n4"] = 1
    check(ledger, facts, budget=BUDGET).assert_ok()


def test_unfinished_and_undead_lettered_rows_are_wrong_states() -> None:
    ledger, facts = healthy()
    facts.rows["n1"] = Row("n1", "k1", "PROCESSING", (None,), (None,))
    facts.deliveries.pop("n1")
    facts.dead_letters.clear()
    report = check(ledger, facts, budget=BUDGET)
    assert report.kinds() == {"not_finished", "not_dead_lettered"}
    assert report.summary()["wrong_state"] == 2


def test_one_key_answered_with_two_ids_is_detected() -> None:
    ledger, facts = healthy()
    ledger.accepted("k1", "n9")
    assert check(ledger, facts, budget=BUDGET).kinds() == {"two_ids_for_one_key"}


def test_one_key_stored_twice_is_detected() -> None:
    ledger, facts = healthy()
    facts.rows["n5"] = Row("n5", "k1", "DONE", ("delivered",), (None,))
    facts.deliveries["n5"] = 1
    assert check(ledger, facts, budget=BUDGET).kinds() == {"two_ids_for_one_key"}


def test_facts_are_read_from_a_hubs_tables(tmp_path: Path) -> None:
    # The real schema, written as the hub writes it; then a lost row is detected.
    from integration_hub.adapters.sqlite import database

    path = tmp_path / "hub.db"
    migrations = Path(database.__file__).parent / "migrations"
    conn = sqlite3.connect(path)
    for script in sorted(migrations.glob("*.sql")):
        conn.executescript(script.read_text())
    conn.execute(
        "INSERT INTO notifications (id, tenant, country, channel, provider, status, request,"
        " idempotency_key, created_at, updated_at) VALUES"
        " ('n1', 'acme', 'ES', 'email', 'sandbox', 'DONE', '{}', 'k1', 0, 0)"
    )
    conn.execute(
        "INSERT INTO attempts (notification_id, number, provider, started_at, outcome)"
        " VALUES ('n1', 1, 'sandbox', 0, 'delivered')"
    )
    conn.execute(
        "INSERT INTO outbox (notification_id, tenant, channel, recipient, body, attempt,"
        " provider_message_id, delivered_at) VALUES ('n1', 'acme', 'email', 'x', 'b', 1, 'p', 0)"
    )
    for seq, type_ in [(1, "notification.accepted"), (2, "notification.done")]:
        conn.execute(
            "INSERT INTO webhook_events (seq, id, tenant, type, occurred_at, notification_id,"
            " data) VALUES (?, ?, 'acme', ?, 0, 'n1', '{}')",
            (seq, f"msg_{seq}", type_),
        )
    conn.commit()
    conn.close()
    facts = read_facts(f"sqlite:///{path}")
    assert facts.events == {
        "n1": [("msg_1", "notification.accepted"), ("msg_2", "notification.done")]
    }
    assert facts.rows["n1"] == Row("n1", "k1", "DONE", ("delivered",), (None,))
    ledger = Ledger()
    ledger.accepted("k1", "n1")
    check(ledger, facts, budget=BUDGET).assert_ok()
    ledger.accepted("k2", "n2")
    assert check(ledger, facts, budget=BUDGET).kinds() == {"lost"}


# -- webhook events: exactly one per committed change, delivered at least once ---------------

A, R, D, F, DL, RD = (
    "notification." + t
    for t in ("accepted", "retrying", "done", "failed", "dead_lettered", "redriven")
)


def with_events() -> tuple[Ledger, Facts]:
    """``healthy()`` with the events each change wrote, all received."""
    ledger, facts = healthy()
    facts.events = {
        "n1": [("e1", A), ("e2", D)],
        "n2": [("e3", A), ("e4", R), ("e5", R), ("e6", F)],
        "n3": [("e7", A), ("e8", D)],  # the abandoned attempt wrote nothing
    }
    facts.webhooks_received = {f"e{i}" for i in range(1, 9)}
    return ledger, facts


def test_one_event_per_change_delivered_is_healthy() -> None:
    check(*with_events(), budget=BUDGET).assert_ok()


@pytest.mark.parametrize(
    ("nid", "events"),
    [
        ("n1", [("e1", A)]),  # done missing
        ("n1", [("e1", A), ("e2", D), ("e9", D)]),  # done twice
        ("n1", [("e2", D), ("e1", A)]),  # accepted not first
        ("n1", [("e1", A), ("e9", A), ("e2", D)]),  # accepted twice
        ("n2", [("e3", A), ("e4", R), ("e6", F)]),  # a retry without its event
        ("n2", [("e3", A), ("e4", R), ("e5", R), ("e9", R), ("e6", F)]),  # one too many
        ("n2", [("e3", A), ("e4", R), ("e5", R)]),  # FAILED without its event
        ("n2", [("e3", A), ("e4", R), ("e5", R), ("e6", F), ("e9", DL)]),  # failed twice
    ],
)
def test_a_change_without_its_event_or_an_event_too_many_is_detected(
    nid: str, events: list[tuple[str, str]]
) -> None:
    ledger, facts = with_events()
    assert facts.events is not None
    facts.events[nid] = events
    facts.webhooks_received = None
    report = check(ledger, facts, budget=BUDGET)
    assert report.kinds() == {"event_mismatch"}
    assert report.summary()["wrong_state"] == 1


def test_a_redrive_balances_one_failure() -> None:
    ledger, facts = with_events()
    assert facts.events is not None
    facts.rows["n1"] = Row("n1", "k1", "DONE", ("transient", "delivered"), ("http_400", None))
    facts.events["n1"] = [("e1", A), ("e9", F), ("e10", RD), ("e2", D)]
    facts.webhooks_received = None
    check(ledger, facts, budget=BUDGET).assert_ok()
    facts.events["n1"] = [("e1", A), ("e9", F), ("e2", D)]
    assert check(ledger, facts, budget=BUDGET).kinds() == {"event_mismatch"}


def test_an_event_no_receiver_verified_is_undelivered() -> None:
    ledger, facts = with_events()
    assert facts.webhooks_received is not None
    facts.webhooks_received.discard("e5")
    report = check(ledger, facts, budget=BUDGET)
    assert report.kinds() == {"webhook_undelivered"}
    assert "notification.retrying" in report.violations[0].detail
