"""Tenant administration shared by the CLI and the admin API.

Validation that needs the adapters (which provider serves which channel, and
whether settings fit a provider) lives here, at the edge; the stores only
persist.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from integration_hub.adapters.providers import registry
from integration_hub.bootstrap import Hub, outbound_policy
from integration_hub.domain import errors, routing
from integration_hub.domain.routing import Channel, Route
from integration_hub.domain.tenants import ApiKeyRecord, Tenant, TenantStatus
from integration_hub.service import tenants as tenant_service

_COUNTRY = WithJsonSchema({"type": "string", "pattern": routing.COUNTRY_PATTERN})


class TenantLimits(BaseModel):
    """A tenant's budgets and limits; a field given as null resets it to the default."""

    model_config = ConfigDict(extra="forbid")

    enabled_countries: list[Annotated[str, _COUNTRY]] | None = Field(
        default=None, description="ISO alpha-2 codes this tenant may send to; null: all routed"
    )
    max_attempts: int | None = Field(default=None, ge=1, le=100)
    backoff_base_seconds: float | None = Field(default=None, gt=0, le=3600)
    backoff_cap_seconds: float | None = Field(default=None, gt=0, le=86400)
    rate_limit_per_second: int | None = Field(default=None, ge=1, le=1_000_000)
    daily_quota: int | None = Field(default=None, ge=1, le=1_000_000_000)

    @field_validator(
        "max_attempts",
        "backoff_base_seconds",
        "backoff_cap_seconds",
        "rate_limit_per_second",
        "daily_quota",
        mode="before",
    )
    @classmethod
    def _not_a_boolean(cls, value: object) -> object:
        # JSON true is no number, though Python's bool is an int.
        if isinstance(value, bool):
            raise ValueError("must be a number, not true or false")
        return value

    @field_validator("enabled_countries")
    @classmethod
    def _iso(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        try:
            return sorted({routing.normalize_country(c) for c in value})
        except errors.HubError as exc:
            raise ValueError(exc.message) from None

    @model_validator(mode="after")
    def _ordered(self) -> TenantLimits:
        base, cap = self.backoff_base_seconds, self.backoff_cap_seconds
        if base is not None and cap is not None and cap < base:
            raise PydanticCustomError(
                "cap_below_base",
                "backoff_cap_seconds must be at least backoff_base_seconds",
                {"at": "backoff_cap_seconds"},  # the field the API's problem names
            )
        return self


def check_provider_serves(provider: str, channel: Channel) -> None:
    """HubError unless ``provider`` can send on ``channel``."""
    if provider == "sandbox":
        return
    kind = registry.KINDS.get(provider)
    if kind is None or channel not in kind.channels:
        known = [n for n, k in sorted(registry.KINDS.items()) if channel in k.channels]
        raise errors.HubError(
            f"{provider!r} cannot send {channel}; use one of: sandbox, {', '.join(known)}",
            field="provider",
        )


def view(tenant: Tenant, configured: list[str]) -> dict[str, Any]:
    """What an operator may see of a tenant: never credentials, never key hashes."""
    return {
        "tenant": tenant.id,
        "name": tenant.name,
        "status": str(tenant.status),
        "created_at": tenant.created_at.isoformat(),
        "routes": {
            c: {"channel": str(r.channel), "provider": r.provider}
            for c in tenant.supported_countries()
            for r in [tenant.route(c)]
        },
        "limits": {
            "enabled_countries": (
                None if tenant.enabled_countries is None else sorted(tenant.enabled_countries)
            ),
            "max_attempts": tenant.max_attempts,
            "backoff_base_seconds": tenant.backoff_base_seconds,
            "backoff_cap_seconds": tenant.backoff_cap_seconds,
            "rate_limit_per_second": tenant.rate_limit_per_second,
            "daily_quota": tenant.daily_quota,
        },
        "configured_providers": configured,
    }


def key_view(record: ApiKeyRecord) -> dict[str, Any]:
    """A key as listed: its public id and dates, never the hash."""
    return {
        "key_id": record.key_id,
        "created_at": record.created_at.isoformat(),
        "revoked_at": record.revoked_at.isoformat() if record.revoked_at else None,
        "active": record.revoked_at is None,
    }


class TenantAdmin:
    """Every tenant operation, for one wired hub."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def create(self, tenant_id: str, name: str | None = None) -> tenant_service.NewTenant:
        """A tenant and its first API key."""
        return await tenant_service.create_tenant(self.hub.store, self.hub.clock, tenant_id, name)

    async def get(self, tenant_id: str) -> Tenant:
        """The tenant, or NotFound."""
        tenant = await self.hub.store.get_tenant(tenant_id)
        if tenant is None:
            raise errors.NotFound(f"no tenant {tenant_id!r}", field="tenant")
        return tenant

    async def view(self, tenant_id: str) -> dict[str, Any]:
        """The redacted view of a tenant."""
        tenant = await self.get(tenant_id)
        return view(tenant, await self.hub.credentials.list_credentials(tenant_id))

    async def list_tenants(self) -> list[Tenant]:
        """Every tenant."""
        return await self.hub.store.list_tenants()

    async def _save(self, tenant: Tenant) -> None:
        await self.hub.store.update_tenant(tenant)
        # At once in this process; the others see it within the cache TTL.
        self.hub.tenants.forget(tenant.id)

    async def set_status(self, tenant_id: str, status: TenantStatus) -> Tenant:
        """Enable or disable; a disabled tenant's keys are refused and its queue is failed."""
        tenant = await self.get(tenant_id)
        tenant.status = status
        await self._save(tenant)
        return tenant

    async def set_route(
        self, tenant_id: str, country: str, channel: Channel, provider: str = "sandbox"
    ) -> str:
        """Route one country; the normalised code."""
        check_provider_serves(provider, channel)
        code = routing.normalize_country(country)
        tenant = await self.get(tenant_id)
        tenant.routes[code] = Route(channel, provider)
        await self._save(tenant)
        return code

    async def set_channel_provider(self, tenant_id: str, channel: Channel, provider: str) -> None:
        """The provider of a channel's default routes (``sandbox`` resets)."""
        check_provider_serves(provider, channel)
        tenant = await self.get(tenant_id)
        if provider == "sandbox":
            tenant.channel_providers.pop(channel, None)
        else:
            tenant.channel_providers[channel] = provider
        await self._save(tenant)

    async def set_limits(self, tenant_id: str, limits: TenantLimits) -> Tenant:
        """Apply the fields given in ``limits``; the others keep their value."""
        tenant = await self.get(tenant_id)
        for name in limits.model_fields_set:
            value = getattr(limits, name)
            if name == "enabled_countries" and value is not None:
                value = frozenset(value)
            setattr(tenant, name, value)
        base, cap = tenant.backoff_base_seconds, tenant.backoff_cap_seconds
        if base is not None and cap is not None and cap < base:
            raise errors.HubError(
                "backoff_cap_seconds must be at least backoff_base_seconds",
                field="backoff_cap_seconds",
            )
        await self._save(tenant)
        return tenant

    async def set_credentials(self, tenant_id: str, provider: str, config: dict[str, Any]) -> None:
        """Validate settings against the provider, then store them sealed."""
        await self.get(tenant_id)
        outbound = outbound_policy(self.hub.settings)
        try:
            # Validates the settings and their URLs and hosts; connects nowhere.
            await registry.build(provider, config, outbound).close()
        except errors.ProviderNotConfigured as exc:
            field = f"credentials.{exc.field}" if exc.field else "credentials"
            raise errors.HubError(exc.message, field=field) from None
        await self.hub.credentials.put_credentials(tenant_id, provider, config)

    async def create_key(self, tenant_id: str) -> str:
        """Another active key (rotation without downtime); shown once."""
        tenant = await self.get(tenant_id)
        return await tenant_service.issue_key(self.hub.store, self.hub.clock, tenant.id)

    async def list_keys(self, tenant_id: str) -> list[ApiKeyRecord]:
        """The tenant's keys."""
        await self.get(tenant_id)
        return await self.hub.store.list_api_keys(tenant_id)

    async def revoke_key(self, tenant_id: str, key_id: str) -> None:
        """Revoke at once; NotFound unless it is one of the tenant's active keys."""
        revoked = await self.hub.store.revoke_api_key(tenant_id, key_id)
        self.hub.keys.forget(key_id)  # at once here; elsewhere within the cache TTL
        if not revoked:
            raise errors.NotFound(
                f"tenant {tenant_id!r} has no active key {key_id!r}", field="key_id"
            )
