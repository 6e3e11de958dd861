"""What a tenant (or an operator, for any tenant) does with its webhook endpoints.

Create, read, change and delete endpoints, rotate their signing secret, look at
their deliveries, retry one, send a test event and replay past events. Every
call is scoped to one tenant: another tenant's endpoint is ``NotFound``, as is
an unknown one.

A secret leaves this module only in the answer of ``create`` and
``rotate_secret``; stored, it is sealed with the tenant's data key under the
endpoint's own purpose (``webhooks.sealing_purpose``), so a sealed value copied
to another endpoint or tenant does not open.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, replace

from integration_hub.domain import errors, webhooks
from integration_hub.domain.models import CONTROL
from integration_hub.domain.outbound import OutboundPolicy, OutboundRefused
from integration_hub.domain.webhooks import (
    Delivery,
    Endpoint,
    SigningSecrets,
    WebhookEvent,
)
from integration_hub.ports.clock import Clock
from integration_hub.ports.secrets import SealedData
from integration_hub.ports.webhooks import EndpointChanged, WebhookStore

MAX_URL_LENGTH = 2048
MAX_DESCRIPTION_LENGTH = 500
# How often a change is re-applied to an endpoint someone else changed meanwhile.
CHANGE_ATTEMPTS = 10


class Keep(enum.Enum):
    """The type of ``KEEP``."""

    KEEP = enum.auto()


KEEP = Keep.KEEP
"""An ``update`` argument left as it is (``event_types=None`` means every type)."""


@dataclass(frozen=True, slots=True)
class WithSecret:
    """An endpoint and its new signing secret: the only time the secret is shown."""

    endpoint: Endpoint
    secret: str
    previous_valid_until: float | None = None
    """After a rotation: the old secret signs too until then (None: it stopped at once)."""


class WebhookService:
    """Tenants' webhook endpoints, on the store's webhook role."""

    def __init__(
        self,
        store: WebhookStore,
        sealer: SealedData,
        clock: Clock,
        outbound: OutboundPolicy,
        *,
        rotation_overlap_seconds: float = webhooks.DEFAULT_ROTATION_OVERLAP_SECONDS,
    ) -> None:
        self.store = store
        self.sealer = sealer
        self.clock = clock
        self.outbound = outbound
        self.rotation_overlap_seconds = rotation_overlap_seconds

    # -- checks -------------------------------------------------------------------------

    def check_url(self, url: str) -> str:
        """The URL as stored, or a 422 naming ``url`` for one the outbound rule refuses."""
        text = url.strip()
        if len(text) > MAX_URL_LENGTH:
            raise errors.HubError(f"url is longer than {MAX_URL_LENGTH} characters", field="url")
        try:
            self.outbound.check_url(text, schemes=("https",))
        except OutboundRefused as exc:
            raise errors.HubError(exc.message, field="url") from None
        return text

    @staticmethod
    def check_description(description: str) -> str:
        """One line of at most 500 characters."""
        if len(description) > MAX_DESCRIPTION_LENGTH:
            raise errors.HubError(
                f"description is longer than {MAX_DESCRIPTION_LENGTH} characters",
                field="description",
            )
        if CONTROL.search(description):
            raise errors.HubError(
                "description must be one line without control characters", field="description"
            )
        return description

    # -- endpoints ----------------------------------------------------------------------

    async def create(
        self,
        tenant: str,
        url: str,
        *,
        description: str = "",
        event_types: Collection[str] | None = None,
        enabled: bool = True,
    ) -> WithSecret:
        """A new endpoint and its secret; at most ``MAX_ENDPOINTS_PER_TENANT`` per tenant."""
        checked_url = self.check_url(url)
        checked_description = self.check_description(description)
        types = webhooks.parse_event_types(event_types)
        endpoint_id = webhooks.new_endpoint_id()
        secret = webhooks.new_secret()
        now = self.clock.now()
        endpoint = Endpoint(
            id=endpoint_id,
            tenant=tenant,
            url=checked_url,
            created_at=now,
            updated_at=now,
            secrets=await self._seal(tenant, endpoint_id, SigningSecrets(secret)),
            description=checked_description,
            event_types=types,
        ).with_enabled(enabled, now)
        # The store counts and inserts atomically: concurrent creations in any number
        # of processes never take a tenant past the cap.
        if not await self.store.create_endpoint(endpoint, limit=webhooks.MAX_ENDPOINTS_PER_TENANT):
            raise errors.Conflict(
                f"a tenant has at most {webhooks.MAX_ENDPOINTS_PER_TENANT} webhook"
                " endpoints: delete one first"
            )
        return WithSecret(endpoint, secret)

    async def get(self, tenant: str, endpoint_id: str) -> Endpoint:
        """The tenant's endpoint; ``NotFound`` for an unknown one or another tenant's."""
        found = await self.store.get_endpoint(tenant, endpoint_id)
        if found is None or found.tenant != tenant:
            raise errors.NotFound(f"no webhook endpoint {endpoint_id!r}", field="endpoint_id")
        return found

    async def endpoints(self, tenant: str) -> list[Endpoint]:
        """The tenant's endpoints, oldest first."""
        return await self.store.list_endpoints(tenant)

    async def update(
        self,
        tenant: str,
        endpoint_id: str,
        *,
        url: str | None = None,
        description: str | None = None,
        event_types: Collection[str] | Keep | None = KEEP,
        enabled: bool | None = None,
    ) -> Endpoint:
        """Change what is given (None / ``KEEP``: as it is); re-enabling is a fresh start."""
        # Everything is checked before anything is written: a refused field changes nothing.
        new_url = None if url is None else self.check_url(url)
        new_description = None if description is None else self.check_description(description)
        new_types = KEEP if event_types is KEEP else webhooks.parse_event_types(event_types)

        async def apply(current: Endpoint) -> Endpoint:
            now = self.clock.now()
            changed = current
            if new_url is not None and new_url != current.url:
                changed = replace(changed, url=new_url, updated_at=now)
            if new_description is not None and new_description != current.description:
                changed = replace(changed, description=new_description, updated_at=now)
            if not isinstance(new_types, Keep) and new_types != current.event_types:
                changed = replace(changed, event_types=new_types, updated_at=now)
            if enabled is not None:
                changed = changed.with_enabled(enabled, now)
            return changed

        return await self._change(tenant, endpoint_id, apply)

    async def delete(self, tenant: str, endpoint_id: str) -> None:
        """Delete the endpoint and its pending deliveries."""
        if not await self.store.delete_endpoint(tenant, endpoint_id):
            raise errors.NotFound(f"no webhook endpoint {endpoint_id!r}", field="endpoint_id")

    async def rotate_secret(self, tenant: str, endpoint_id: str) -> WithSecret:
        """A new secret that signs from now; the old one signs too for the overlap."""
        new = webhooks.new_secret()
        until: list[float | None] = []

        async def apply(current: Endpoint) -> Endpoint:
            # Rotated from the secrets as stored now: a concurrent rotation's new
            # secret becomes this one's previous, so neither caller's secret is lost.
            now = self.clock.now()
            rotated = (await self._unseal(current)).rotated(new, now, self.rotation_overlap_seconds)
            until[:] = [rotated.previous_until]
            sealed = await self._seal(tenant, current.id, rotated)
            return replace(current, secrets=sealed, updated_at=now)

        changed = await self._change(tenant, endpoint_id, apply)
        return WithSecret(changed, new, until[0])

    # -- deliveries ---------------------------------------------------------------------

    async def deliveries(
        self, tenant: str, endpoint_id: str, *, limit: int = 50, before_id: str | None = None
    ) -> list[Delivery]:
        """The endpoint's deliveries with their attempts, newest first."""
        await self.get(tenant, endpoint_id)
        return await self.store.list_deliveries(
            tenant, endpoint_id, limit=limit, before_id=before_id
        )

    async def retry(self, tenant: str, endpoint_id: str, delivery_id: str) -> Delivery:
        """A finished delivery due again at once, with a fresh schedule."""
        await self.get(tenant, endpoint_id)
        found = await self.store.get_delivery(tenant, delivery_id)
        if found is None or found.endpoint_id != endpoint_id or found.tenant != tenant:
            raise errors.NotFound(f"no delivery {delivery_id!r}", field="delivery_id")
        if not found.status.finished:
            raise errors.Conflict(
                "this delivery is still pending: it is retried on its schedule",
                field="delivery_id",
            )
        if not await self.store.retry_delivery(tenant, endpoint_id, delivery_id):
            raise errors.NotFound(f"no delivery {delivery_id!r}", field="delivery_id")
        again = await self.store.get_delivery(tenant, delivery_id)
        return again if again is not None else found

    async def send_test(self, tenant: str, endpoint_id: str) -> WebhookEvent:
        """A ``webhook.test`` event for this endpoint only."""
        endpoint = await self._enabled(tenant, endpoint_id, "a test event")
        ping = webhooks.ping_event(endpoint, self.clock.now())
        await self.store.append_event(ping)
        return ping

    async def replay(
        self,
        tenant: str,
        endpoint_id: str,
        since: float,
        types: Collection[str] | None = None,
    ) -> int:
        """The tenant's events since ``since`` delivered to this endpoint again; how many."""
        chosen = webhooks.parse_event_types(types, field="types")
        await self._enabled(tenant, endpoint_id, "a replay")
        return await self.store.replay(tenant, endpoint_id, since=since, types=chosen)

    # -- helpers ------------------------------------------------------------------------

    async def _change(
        self,
        tenant: str,
        endpoint_id: str,
        apply: Callable[[Endpoint], Awaitable[Endpoint]],
    ) -> Endpoint:
        """Read the endpoint, ``apply`` the change and write it at the revision read;
        when someone changed it meanwhile (another update, the delivery loop disabling
        it), read it again and re-apply, so no change is written over a newer one."""
        for _ in range(CHANGE_ATTEMPTS):
            current = await self.get(tenant, endpoint_id)
            changed = await apply(current)
            if changed is current:
                return current
            try:
                written = await self.store.update_endpoint(changed)
            except EndpointChanged:
                continue
            if not written:
                raise errors.NotFound(f"no webhook endpoint {endpoint_id!r}", field="endpoint_id")
            return replace(changed, revision=changed.revision + 1)
        raise errors.Unavailable("the webhook endpoint is changing too often: try again")

    async def _enabled(self, tenant: str, endpoint_id: str, what: str) -> Endpoint:
        endpoint = await self.get(tenant, endpoint_id)
        if not endpoint.enabled:
            raise errors.Conflict(
                f"the endpoint is disabled ({endpoint.disabled_reason}): enable it before {what}",
                field="enabled",
            )
        return endpoint

    async def _seal(self, tenant: str, endpoint_id: str, secrets: SigningSecrets) -> dict[str, str]:
        purpose = webhooks.sealing_purpose(endpoint_id)
        return await self.sealer.seal(tenant, purpose, secrets.as_dict())

    async def _unseal(self, endpoint: Endpoint) -> SigningSecrets:
        purpose = webhooks.sealing_purpose(endpoint.id)
        return SigningSecrets.from_dict(
            await self.sealer.unseal(endpoint.tenant, purpose, endpoint.secrets)
        )
