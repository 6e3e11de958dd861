"""The webhook rules of domain/webhooks.py: events, fan-out, signatures, the schedule, disabling.

Signatures are checked with the official ``standardwebhooks`` package: a verifier nobody here
wrote.
"""

from __future__ import annotations

import base64
import json
import random
import time
from dataclasses import replace

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from integration_hub.domain import errors
from integration_hub.domain import webhooks as wh
from integration_hub.domain.receipts import DeliveryState
from integration_hub.domain.status import Status
from integration_hub.domain.webhooks import (
    AttemptOutcome,
    AttemptResult,
    DeliveryStatus,
    DisabledReason,
    DisablePolicy,
    EventType,
    SigningSecrets,
)

E = EventType
NOW = 1_800_000_000.0


def endpoint(**kw: object) -> wh.Endpoint:
    base = wh.Endpoint(
        id=wh.new_endpoint_id(),
        tenant="acme",
        url="https://hooks.example.com/in",
        created_at=NOW,
        updated_at=NOW,
        secrets={},
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def notification_row(**kw: object) -> dict[str, object]:
    row: dict[str, object] = {
        "id": "n1",
        "tenant": "acme",
        "country": "US",
        "channel": "sms",
        "provider": "twilio",
        "status": "DONE",
        "delivery_state": "sent",
        "attempt_count": 2,
        "last_error": None,
        "request": "{...}",  # not part of the payload
    }
    row.update(kw)
    return row


# -- which change is which event ----------------------------------------------------------------


def test_each_completion_has_its_event() -> None:
    assert wh.completion_event(Status.PROCESSING) is E.RETRYING
    assert wh.completion_event(Status.DONE) is E.DONE
    assert wh.completion_event(Status.FAILED) is E.FAILED
    with pytest.raises(ValueError, match="cannot move"):
        wh.completion_event(Status.RECEIVED)


def test_only_a_moving_delivery_state_reports() -> None:
    D = DeliveryState
    assert wh.delivery_event(D.SENT, D.DELIVERED) is E.DELIVERED
    assert wh.delivery_event(D.DELIVERED, D.READ) is E.READ
    assert wh.delivery_event(D.SENT, D.EXPIRED) is E.EXPIRED
    assert wh.delivery_event(D.READ, D.READ) is None
    assert wh.delivery_event(None, D.SENT) is None  # notification.done carries sent
    assert {wh.delivery_event(D.SENT, s) for s in D if s is not D.SENT} == {
        E.DELIVERED,
        E.READ,
        E.UNDELIVERED,
        E.BOUNCED,
        E.COMPLAINED,
        E.EXPIRED,
    }


def test_the_notification_events_are_the_issues_twelve() -> None:
    assert len(wh.NOTIFICATION_EVENTS) == 12
    assert E.TEST not in wh.NOTIFICATION_EVENTS
    assert E.ENDPOINT_DISABLED not in wh.NOTIFICATION_EVENTS


# -- events and bodies ------------------------------------------------------------------------


def test_the_payload_is_the_row_after_the_change_and_nothing_else() -> None:
    event = wh.notification_event(E.DONE, notification_row(attempt_count=2.0), NOW)
    assert event.id.startswith("msg_")
    assert event.tenant == "acme"
    assert event.notification_id == "n1"
    body = json.loads(event.body())
    assert body == {
        "type": "notification.done",
        "timestamp": "2027-01-15T08:00:00.000Z",
        "data": {
            "id": "n1",
            "tenant": "acme",
            "country": "US",
            "channel": "sms",
            "provider": "twilio",
            "status": "DONE",
            "delivery_state": "sent",
            "attempt_count": 2,
            "last_error": None,
        },
    }
    assert event.body() == event.body()  # the same bytes on every retry


def test_absent_fields_are_null_as_a_dynamodb_item_leaves_them_out() -> None:
    row = notification_row()
    del row["delivery_state"], row["last_error"], row["attempt_count"]
    data = wh.notification_data(row)
    assert data["delivery_state"] is None
    assert data["last_error"] is None
    assert data["attempt_count"] == 0


def test_event_ids_are_unique() -> None:
    assert len({wh.new_event_id() for _ in range(1000)}) == 1000


# -- fan-out ----------------------------------------------------------------------------------


def test_an_endpoint_accepts_its_tenants_subscribed_events_while_enabled() -> None:
    done = wh.notification_event(E.DONE, notification_row(), NOW)
    assert endpoint().accepts(done)
    assert endpoint(event_types=frozenset({E.DONE})).accepts(done)
    assert not endpoint(event_types=frozenset({E.FAILED})).accepts(done)
    assert not endpoint(tenant="globex").accepts(done)
    assert not endpoint(enabled=False).accepts(done)


def test_a_test_event_goes_only_to_its_endpoint_and_ignores_filters() -> None:
    target = endpoint(event_types=frozenset({E.DONE}))
    other = endpoint()
    ping = wh.ping_event(target, NOW)
    assert wh.fan_out(ping, [target, other]) == [target]


def test_the_news_of_a_disabling_goes_to_the_other_endpoints() -> None:
    gone, other = endpoint(), endpoint()
    notice = wh.disabled_event(gone, DisabledReason.GONE, NOW)
    assert notice.data == {"endpoint_id": gone.id, "url": gone.url, "reason": "gone"}
    assert wh.fan_out(notice, [gone, other]) == [other]


# -- secrets and signatures ---------------------------------------------------------------------


def test_a_new_secret_is_whsec_and_at_least_24_random_bytes() -> None:
    secret = wh.new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret[6:])) >= 24
    assert wh.new_secret() != secret


def test_signatures_verify_with_the_official_package() -> None:
    secret = wh.new_secret()
    event = wh.notification_event(E.DONE, notification_row(), NOW)
    stamp = int(time.time())
    headers = wh.sign([secret], event.id, stamp, event.body())
    assert headers["webhook-id"] == event.id
    assert headers["webhook-timestamp"] == str(stamp)
    assert Webhook(secret).verify(event.body(), headers)["type"] == "notification.done"
    with pytest.raises(WebhookVerificationError):
        Webhook(wh.new_secret()).verify(event.body(), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(event.body() + b" ", headers)


def test_during_a_rotation_both_secrets_sign_and_afterwards_only_the_new() -> None:
    old, new = wh.new_secret(), wh.new_secret()
    secrets = SigningSecrets(current=old).rotated(new, NOW, 3600)
    assert secrets.signing(NOW + 10) == [new, old]
    assert secrets.signing(NOW + 3600) == [new]
    body = b'{"type":"webhook.test"}'
    stamp = int(time.time())
    during = wh.sign(secrets.signing(NOW + 10), "msg_1", stamp, body)
    assert len(during["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(body, during)
    Webhook(new).verify(body, during)
    after = wh.sign(secrets.signing(NOW + 3601), "msg_1", stamp, body)
    Webhook(new).verify(body, after)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(body, after)
    assert SigningSecrets.from_dict(secrets.as_dict()) == secrets
    assert SigningSecrets(current=old).rotated(new, NOW, 0) == SigningSecrets(current=new)


def test_a_secret_that_is_not_whsec_base64_is_refused() -> None:
    with pytest.raises(ValueError, match="whsec_"):
        wh.secret_key("hunter2")
    with pytest.raises(ValueError, match="base64"):
        wh.secret_key("whsec_not base64!")


# -- the schedule ---------------------------------------------------------------------------


def test_the_schedule_is_the_standard_webhooks_one() -> None:
    assert wh.SCHEDULE == (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
    assert 26 * 3600 < sum(wh.SCHEDULE) < 28 * 3600
    assert wh.MAX_ATTEMPTS == 8


def test_backoff_is_full_jitter_within_the_next_step() -> None:
    rng = random.Random(7)
    for attempt in range(1, 8):
        waits = [wh.backoff(attempt, rng=rng) for _ in range(500)]
        step = wh.SCHEDULE[attempt]
        assert all(0 <= w <= step for w in waits)
        assert max(waits) > 0.8 * step  # spread over the whole step, not clustered
        assert min(waits) < 0.2 * step


FAIL = AttemptResult(AttemptOutcome.HTTP_ERROR, status_code=500)
POLICY = DisablePolicy()


def decide(attempt: int, result: AttemptResult = FAIL, **kw: object) -> wh.DeliveryDecision:
    options: dict[str, object] = {
        "failing_since": None,
        "consecutive_failures": 0,
        "policy": POLICY,
        "rng": random.Random(1),
    }
    options.update(kw)
    return wh.decide_delivery(attempt=attempt, result=result, now=NOW, **options)  # type: ignore[arg-type]


def test_a_2xx_succeeds_and_heals_the_endpoint() -> None:
    ok = AttemptResult(AttemptOutcome.SUCCESS, status_code=204)
    got = decide(3, ok, failing_since=NOW - 100, consecutive_failures=7)
    assert got == wh.DeliveryDecision(DeliveryStatus.SUCCEEDED, None, None, 0)


def test_a_failure_is_retried_until_the_schedule_is_spent() -> None:
    for attempt in range(1, 8):
        got = decide(attempt)
        assert got.status is DeliveryStatus.PENDING
        assert got.next_attempt_at is not None
        assert NOW <= got.next_attempt_at <= NOW + wh.SCHEDULE[attempt]
        assert (got.failing_since, got.consecutive_failures) == (NOW, 1)
    last = decide(8)
    assert last.status is DeliveryStatus.FAILED
    assert last.next_attempt_at is None
    assert last.disable is None


def test_retry_after_is_honoured_up_to_an_hour() -> None:
    slow = AttemptResult(AttemptOutcome.HTTP_ERROR, status_code=429, retry_after_seconds=120)
    got = decide(1, slow)
    assert got.next_attempt_at == NOW + 120
    absurd = AttemptResult(AttemptOutcome.HTTP_ERROR, status_code=503, retry_after_seconds=1e9)
    assert decide(1, absurd).next_attempt_at == NOW + wh.RETRY_AFTER_LIMIT_SECONDS


def test_410_fails_and_disables_at_once() -> None:
    got = decide(1, AttemptResult(AttemptOutcome.GONE, status_code=410))
    assert got.status is DeliveryStatus.FAILED
    assert got.disable is DisabledReason.GONE


def test_an_endpoint_failing_long_enough_or_often_enough_is_disabled() -> None:
    policy = DisablePolicy(failing_seconds=3600, consecutive_failures=10)
    assert decide(1, failing_since=NOW - 3599, policy=policy).disable is None
    long = decide(1, failing_since=NOW - 3600, policy=policy)
    assert long.disable is DisabledReason.FAILING
    assert long.status is DeliveryStatus.FAILED
    assert decide(1, consecutive_failures=8, policy=policy).disable is None
    often = decide(1, consecutive_failures=9, policy=policy)
    assert often.disable is DisabledReason.FAILING
    assert often.consecutive_failures == 10
    assert decide(1, failing_since=NOW - 7200).failing_since == NOW - 7200  # the run goes on


def test_a_disable_policy_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        DisablePolicy(failing_seconds=0)
    with pytest.raises(ValueError, match="positive"):
        DisablePolicy(consecutive_failures=0)


def test_outcomes_of_status_codes() -> None:
    assert wh.outcome_of(200) is AttemptOutcome.SUCCESS
    assert wh.outcome_of(299) is AttemptOutcome.SUCCESS
    assert wh.outcome_of(301) is AttemptOutcome.HTTP_ERROR  # redirects are not followed
    assert wh.outcome_of(410) is AttemptOutcome.GONE
    assert wh.outcome_of(500) is AttemptOutcome.HTTP_ERROR


# -- ordering and caps -------------------------------------------------------------------------


def test_a_delivery_waits_for_every_earlier_one_of_its_notification() -> None:
    assert wh.may_deliver([])
    assert wh.may_deliver([DeliveryStatus.SUCCEEDED, DeliveryStatus.FAILED])
    assert not wh.may_deliver([DeliveryStatus.SUCCEEDED, DeliveryStatus.PENDING])


def test_in_flight_caps_per_endpoint_and_per_tenant() -> None:
    slots = wh.InFlight(per_endpoint=2, per_tenant=3)
    assert slots.admit("e1", "acme")
    assert slots.admit("e1", "acme")
    assert not slots.admit("e1", "acme")  # the endpoint is full
    assert slots.full_endpoints() == {"e1"}
    assert slots.admit("e2", "acme")
    assert not slots.admit("e3", "acme")  # the tenant is full
    assert slots.full_tenants() == {"acme"}
    assert slots.admit("e9", "globex")  # another tenant is not held up
    slots.release("e1", "acme")
    assert slots.full_endpoints() == set()
    assert slots.admit("e3", "acme")
    for e in ("e1", "e2", "e3"):
        slots.release(e, "acme")
    slots.release("e9", "globex")
    assert slots.endpoints == {}
    assert slots.tenants == {}


# -- what a tenant sets ---------------------------------------------------------------------


def test_event_types_are_parsed_and_null_means_every_type() -> None:
    assert wh.parse_event_types(None) is None
    chosen = wh.parse_event_types(["notification.done", "notification.done", "endpoint.disabled"])
    assert chosen == frozenset({E.DONE, E.ENDPOINT_DISABLED})


@pytest.mark.parametrize("values", [["notification.sent"], ["webhook.test"], [], ["DONE"]])
def test_an_unknown_test_or_empty_event_type_list_is_refused_naming_the_field(
    values: list[str],
) -> None:
    with pytest.raises(errors.HubError) as refused:
        wh.parse_event_types(values, field="types")
    assert refused.value.field == "types"


def test_since_is_rfc_3339_with_an_offset_or_unix_seconds() -> None:
    assert wh.parse_since("1800000000") == NOW
    assert wh.parse_since("1800000000.5") == NOW + 0.5
    assert wh.parse_since("2027-01-15T08:00:00Z") == NOW
    assert wh.parse_since(" 2027-01-15 08:00:00.250+00:00 ") == NOW + 0.25
    assert wh.parse_since("2027-01-15T09:00:00+01:00") == wh.parse_since("2027-01-15T08:00:00Z")


@pytest.mark.parametrize(
    "text", ["", "yesterday", "2027-01-15T08:00:00", "2027-01-15", "-5", "1e9", "9" * 400]
)
def test_anything_else_as_since_is_refused_naming_since(text: str) -> None:
    with pytest.raises(errors.HubError) as refused:
        wh.parse_since(text)
    assert refused.value.field == "since"


def test_re_enabling_is_a_fresh_start_and_disabling_is_by_the_tenant() -> None:
    failed = endpoint(
        enabled=False,
        disabled_reason=DisabledReason.FAILING,
        disabled_at=NOW,
        failing_since=NOW - 5 * 86400,
        consecutive_failures=1000,
    )
    again = failed.with_enabled(True, NOW + 60)
    assert again.enabled
    assert (again.disabled_reason, again.disabled_at, again.failing_since) == (None, None, None)
    assert (again.consecutive_failures, again.updated_at) == (0, NOW + 60)
    off = again.with_enabled(False, NOW + 120)
    assert (off.enabled, off.disabled_reason, off.disabled_at) == (
        False,
        DisabledReason.BY_TENANT,
        NOW + 120,
    )


def test_the_same_enabled_flag_again_keeps_the_failure_run() -> None:
    failing = endpoint(failing_since=NOW - 60, consecutive_failures=3)
    assert failing.with_enabled(True, NOW) is failing
