"""``ihub top``'s arithmetic: merging processes, rates, restarted processes."""

from __future__ import annotations

import pytest

from integration_hub.entrypoints import top

API = """
ihub_notifications_accepted_total{tenant="acme",country="ES",channel="email",provider="sandbox"} 10
ihub_queue_messages{state="visible"} 4
ihub_dead_letters 2
ihub_store_up 1
"""
WORKER = """
ihub_notifications_finished_total{tenant="acme",country="ES",channel="email",provider="sandbox",outcome="done"} 8
ihub_attempts_total{tenant="acme",channel="email",provider="smtp",outcome="delivered",error_class="none"} 8
ihub_attempts_total{tenant="acme",channel="email",provider="smtp",outcome="transient",error_class="timeout"} 2
ihub_attempts_in_flight 3
ihub_queue_messages{state="visible"} 4
ihub_dead_letters 2
ihub_store_up 1
"""  # noqa: E501 - exposition lines are long


def test_counters_add_up_over_processes_and_store_gauges_count_once() -> None:
    merged = top.parse(API, 0.0).merge(top.parse(WORKER, 0.0))
    assert merged.accepted == 10
    assert merged.finished == {"done": 8}
    assert merged.queue == {"visible": 4}
    assert merged.dead_letters == 2
    assert merged.in_flight == 3
    assert merged.store_up is True


def test_one_process_with_its_store_down_shows_the_store_down() -> None:
    down = top.parse("ihub_store_up 0\n", 0.0)
    assert top.parse(API, 0.0).merge(down).store_up is False


def test_rates_are_the_change_over_the_interval() -> None:
    before = top.parse(WORKER, 10.0)
    later = WORKER.replace("} 8\n", "} 18\n").replace("} 2\n", "} 12\n")
    f = top.frame(before, top.parse(later, 15.0))
    assert f.done_per_second == pytest.approx(2.0)
    [smtp] = f.providers
    assert smtp.calls_per_second == pytest.approx(4.0)
    assert smtp.error_rate == pytest.approx(0.5)


def test_a_restarted_process_counts_from_zero_not_negative() -> None:
    before = top.parse(API.replace("} 10", "} 500"), 0.0)
    f = top.frame(before, top.parse(API, 5.0))
    assert f.accepted_per_second == pytest.approx(2.0)


def test_a_provider_without_calls_in_the_interval_has_no_error_rate() -> None:
    sample = top.parse(WORKER, 0.0)
    [smtp] = top.frame(sample, top.parse(WORKER, 1.0)).providers
    assert smtp.error_rate is None


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:8000/metrics"),
        ("0.0.0.0", "http://127.0.0.1:8000/metrics"),  # noqa: S104 - a bind address read
        ("::1", "http://[::1]:8000/metrics"),
    ],
)
def test_the_default_url_is_the_local_api(host: str, url: str) -> None:
    assert top.default_url(host, 8000) == url
