"""WebhookService on an in-memory store (unit tests; tests/webhooks/test_webhooks_api.py runs
the same operations over HTTP on the SQLite backend)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

import pytest

from integration_hub.domain import errors
from integration_hub.domain import webhooks as wh
from integration_hub.domain.outbound import OutboundPolicy
from integration_hub.domain.webhooks import DeliveryStatus, DisabledReason, EventType
from integration_hub.service.webhooks.manage import WebhookService
from support import ManualClock
from webhooks.fakes import FakeSealer, MemoryWebhookStore

URL = "https://hooks.example.com/in"
OVERLAP = 3600.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_800_000_000.0)


@pytest.fixture
def store(clock: ManualClock) -> MemoryWebhookStore:
    return MemoryWebhookStore(clock)


def service_on(
    store: MemoryWebhookStore, clock: ManualClock, policy: OutboundPolicy | None = None
) -> WebhookService:
    return WebhookService(
        store, FakeSealer(), clock, policy or OutboundPolicy(), rotation_overlap_seconds=OVERLAP
    )


@pytest.fixture
def service(store: MemoryWebhookStore, clock: ManualClock) -> WebhookService:
    return service_on(store, clock)


async def test_create_answers_the_secret_and_stores_it_only_sealed(
    service: WebhookService, store: MemoryWebhookStore
) -> None:
    created = await service.create(
        "acme", URL, description="orders", event_types=["notification.done"]
    )
    assert created.secret.startswith("whsec_")
    stored = store.endpoints[created.endpoint.id]
    assert created.secret not in json.dumps(dict(stored.secrets))
    assert (stored.url, stored.description, stored.event_types, stored.enabled) == (
        URL,
        "orders",
        frozenset({EventType.DONE}),
        True,
    )
    opened = await FakeSealer().unseal("acme", wh.sealing_purpose(stored.id), stored.secrets)
    assert wh.SigningSecrets.from_dict(opened) == wh.SigningSecrets(created.secret)


async def test_created_disabled_is_disabled_by_the_tenant(service: WebhookService) -> None:
    created = await service.create("acme", URL, enabled=False)
    assert (created.endpoint.enabled, created.endpoint.disabled_reason) == (
        False,
        DisabledReason.BY_TENANT,
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/in",
        "https://127.0.0.1/in",
        "https://169.254.169.254/latest/meta-data",
        "https://10.0.0.1/in",
        "https://[::1]/in",
        "https://[::ffff:127.0.0.1]/in",
        "https://localhost/in",
        "https://user:pw@hooks.example.com/in",
        "not a url",
        "https://" + "a" * 2050 + ".example.com/",
    ],
)
async def test_a_url_the_outbound_rule_refuses_is_a_422_naming_url_and_stores_nothing(
    service: WebhookService, store: MemoryWebhookStore, url: str
) -> None:
    with pytest.raises(errors.HubError) as refused:
        await service.create("acme", url)
    assert refused.value.field == "url"
    assert store.endpoints == {}


async def test_plain_http_is_accepted_when_the_policy_allows_it(
    store: MemoryWebhookStore, clock: ManualClock
) -> None:
    lax = service_on(store, clock, OutboundPolicy.of(allow_http=True))
    created = await lax.create("acme", "http://hooks.example.com/in")
    assert created.endpoint.url == "http://hooks.example.com/in"


async def test_an_unknown_event_type_is_refused_naming_event_types(
    service: WebhookService, store: MemoryWebhookStore
) -> None:
    with pytest.raises(errors.HubError) as refused:
        await service.create("acme", URL, event_types=["notification.done", "order.paid"])
    assert refused.value.field == "event_types"
    assert store.endpoints == {}


async def test_the_51st_endpoint_is_a_conflict(
    service: WebhookService, store: MemoryWebhookStore
) -> None:
    for _ in range(wh.MAX_ENDPOINTS_PER_TENANT):
        await service.create("acme", URL)
    with pytest.raises(errors.Conflict):
        await service.create("acme", URL)
    assert len(await store.list_endpoints("acme")) == wh.MAX_ENDPOINTS_PER_TENANT
    await service.create("globex", URL)  # the cap is per tenant


async def test_another_tenants_endpoint_is_not_found_for_every_operation(
    service: WebhookService, store: MemoryWebhookStore
) -> None:
    theirs = (await service.create("globex", URL)).endpoint
    delivery = store.add_delivery(theirs)
    calls = [
        service.get("acme", theirs.id),
        service.update("acme", theirs.id, description="mine now"),
        service.delete("acme", theirs.id),
        service.rotate_secret("acme", theirs.id),
        service.deliveries("acme", theirs.id),
        service.retry("acme", theirs.id, delivery.id),
        service.send_test("acme", theirs.id),
        service.replay("acme", theirs.id, 0.0),
    ]
    for call in calls:
        with pytest.raises(errors.NotFound):
            await call
    assert store.endpoints[theirs.id] == theirs
    assert store.events == []
    assert store.replays == []


async def test_update_changes_what_is_sent_and_null_event_types_means_all(
    service: WebhookService, clock: ManualClock
) -> None:
    created = (await service.create("acme", URL, event_types=["notification.failed"])).endpoint
    clock.t += 10
    changed = await service.update(
        "acme", created.id, url="https://other.example.com/x", event_types=None
    )
    assert (changed.url, changed.event_types, changed.description) == (
        "https://other.example.com/x",
        None,
        "",
    )
    assert changed.updated_at == clock.t
    assert await service.get("acme", created.id) == changed
    assert await service.update("acme", created.id) == changed  # nothing sent, nothing changed


async def test_a_refused_field_in_an_update_changes_nothing(
    service: WebhookService, store: MemoryWebhookStore
) -> None:
    created = (await service.create("acme", URL)).endpoint
    with pytest.raises(errors.HubError) as refused:
        await service.update("acme", created.id, description="new", url="https://10.1.2.3/")
    assert refused.value.field == "url"
    with pytest.raises(errors.HubError) as refused:
        await service.update("acme", created.id, description="two\nlines")
    assert refused.value.field == "description"
    assert store.endpoints[created.id] == created


async def test_re_enabling_clears_the_disabling_and_the_failure_run(
    service: WebhookService, store: MemoryWebhookStore, clock: ManualClock
) -> None:
    created = (await service.create("acme", URL)).endpoint
    store.endpoints[created.id] = replace(
        created,
        enabled=False,
        disabled_reason=DisabledReason.FAILING,
        disabled_at=clock.t,
        failing_since=clock.t - 86400,
        consecutive_failures=1000,
    )
    again = await service.update("acme", created.id, enabled=True)
    assert (again.enabled, again.disabled_reason, again.disabled_at) == (True, None, None)
    assert (again.failing_since, again.consecutive_failures) == (None, 0)


async def test_rotation_answers_a_new_secret_and_the_old_one_signs_for_the_overlap(
    service: WebhookService, store: MemoryWebhookStore, clock: ManualClock
) -> None:
    created = await service.create("acme", URL)
    clock.t += 100
    rotated = await service.rotate_secret("acme", created.endpoint.id)
    assert rotated.secret.startswith("whsec_")
    assert rotated.secret != created.secret
    assert rotated.previous_valid_until == clock.t + OVERLAP
    stored = store.endpoints[created.endpoint.id]
    opened = wh.SigningSecrets.from_dict(
        await FakeSealer().unseal("acme", wh.sealing_purpose(stored.id), stored.secrets)
    )
    assert opened.signing(clock.t + 1) == [rotated.secret, created.secret]
    assert opened.signing(clock.t + OVERLAP + 1) == [rotated.secret]


async def test_deliveries_are_newest_first_and_paged(
    service: WebhookService, store: MemoryWebhookStore, clock: ManualClock
) -> None:
    endpoint = (await service.create("acme", URL)).endpoint
    made = []
    for _ in range(3):
        clock.t += 1
        made.append(store.add_delivery(endpoint))
    first = await service.deliveries("acme", endpoint.id, limit=2)
    assert [d.id for d in first] == [made[2].id, made[1].id]
    rest = await service.deliveries("acme", endpoint.id, limit=2, before_id=first[-1].id)
    assert [d.id for d in rest] == [made[0].id]


async def test_a_finished_delivery_is_retried_and_a_pending_one_is_a_conflict(
    service: WebhookService, store: MemoryWebhookStore
) -> None:
    endpoint = (await service.create("acme", URL)).endpoint
    other = (await service.create("acme", URL)).endpoint
    failed = store.add_delivery(endpoint)
    again = await service.retry("acme", endpoint.id, failed.id)
    assert again.status is DeliveryStatus.PENDING
    with pytest.raises(errors.Conflict):
        await service.retry("acme", endpoint.id, failed.id)
    with pytest.raises(errors.NotFound) as missing:
        await service.retry("acme", other.id, failed.id)  # not that endpoint's
    assert missing.value.field == "delivery_id"


async def test_a_test_event_is_for_that_endpoint_only_and_needs_it_enabled(
    service: WebhookService, store: MemoryWebhookStore
) -> None:
    endpoint = (await service.create("acme", URL)).endpoint
    ping = await service.send_test("acme", endpoint.id)
    assert store.events == [ping]
    assert (ping.type, ping.endpoint_id, ping.tenant) == (EventType.TEST, endpoint.id, "acme")
    off = (await service.create("acme", URL, enabled=False)).endpoint
    with pytest.raises(errors.Conflict) as refused:
        await service.send_test("acme", off.id)
    assert refused.value.field == "enabled"
    assert store.events == [ping]


async def test_replay_needs_the_endpoint_enabled_and_known_types(
    service: WebhookService, store: MemoryWebhookStore
) -> None:
    endpoint = (await service.create("acme", URL)).endpoint
    await service.replay("acme", endpoint.id, 123.0, ["notification.done"])
    assert store.replays == [("acme", endpoint.id, 123.0, frozenset({EventType.DONE}))]
    with pytest.raises(errors.HubError) as refused:
        await service.replay("acme", endpoint.id, 123.0, ["nope"])
    assert refused.value.field == "types"
    await service.update("acme", endpoint.id, enabled=False)
    with pytest.raises(errors.Conflict):
        await service.replay("acme", endpoint.id, 123.0)
    assert len(store.replays) == 1


async def test_delete_removes_it_and_a_second_delete_is_not_found(
    service: WebhookService, store: MemoryWebhookStore
) -> None:
    endpoint = (await service.create("acme", URL)).endpoint
    await service.delete("acme", endpoint.id)
    assert store.endpoints == {}
    with pytest.raises(errors.NotFound):
        await service.delete("acme", endpoint.id)


@dataclass
class RacedStore(MemoryWebhookStore):
    """Writes ``meanwhile`` over the stored endpoint just before the next update is
    written: another process changing it between this one's read and write."""

    meanwhile: list[wh.Endpoint] = field(default_factory=list)

    async def update_endpoint(self, endpoint: wh.Endpoint) -> bool:
        if self.meanwhile:
            other = self.meanwhile.pop()
            stored = self.endpoints[other.id]
            self.endpoints[other.id] = replace(other, revision=stored.revision + 1)
        return await super().update_endpoint(endpoint)


async def test_a_patch_racing_the_loop_disabling_the_endpoint_does_not_re_enable_it(
    clock: ManualClock,
) -> None:
    store = RacedStore(clock)
    service = service_on(store, clock)
    created = await service.create("acme", URL)
    # Between the PATCH's read and its write, the delivery loop disables it (410).
    gone = replace(
        store.endpoints[created.endpoint.id],
        enabled=False,
        disabled_reason=DisabledReason.GONE,
        disabled_at=clock.t,
    )
    store.meanwhile = [gone]
    changed = await service.update("acme", created.endpoint.id, description="renamed")
    stored = store.endpoints[created.endpoint.id]
    assert (stored.description, stored.enabled, stored.disabled_reason) == (
        "renamed",
        False,
        DisabledReason.GONE,
    )
    assert changed == stored


async def test_two_rotations_at_once_keep_both_new_secrets(clock: ManualClock) -> None:
    store = RacedStore(clock)
    service = service_on(store, clock)
    created = await service.create("acme", URL)
    before = store.endpoints[created.endpoint.id]
    first = await service.rotate_secret("acme", created.endpoint.id)
    after_first = store.endpoints[created.endpoint.id]
    # The second rotation reads the endpoint as it was before the first wrote; the
    # first's write lands between its read and its write, which is refused, so it
    # rotates again from the first's result.
    store.endpoints[created.endpoint.id] = before
    store.meanwhile = [replace(after_first, revision=before.revision)]
    second = await service.rotate_secret("acme", created.endpoint.id)
    stored = store.endpoints[created.endpoint.id]
    opened = wh.SigningSecrets.from_dict(
        await FakeSealer().unseal("acme", wh.sealing_purpose(stored.id), stored.secrets)
    )
    assert opened.signing(clock.t + 1) == [second.secret, first.secret]
