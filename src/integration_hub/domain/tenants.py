"""Tenants and their API keys."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from integration_hub.domain.errors import HubError, UnsupportedCountry
from integration_hub.domain.routing import Channel, Route, resolve, routing_table

TENANT_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
KEY_PREFIX = "ihub"
_KEY_ID = re.compile(r"[0-9a-f]{12}")


class TenantStatus(StrEnum):
    """Whether a tenant may send."""

    ACTIVE = "active"
    DISABLED = "disabled"


@dataclass(slots=True)
class Tenant:
    """A customer of the hub, with its own routing and retry budget."""

    id: str
    name: str
    created_at: datetime
    status: TenantStatus = TenantStatus.ACTIVE
    routes: dict[str, Route] = field(default_factory=dict)
    channel_providers: dict[Channel, str] = field(default_factory=dict)
    # Every None below means "the hub's default".
    enabled_countries: frozenset[str] | None = None  # None: every routed country
    max_attempts: int | None = None
    backoff_base_seconds: float | None = None
    backoff_cap_seconds: float | None = None
    rate_limit_per_second: int | None = None  # None: unlimited
    daily_quota: int | None = None  # notifications accepted per UTC day; None: unlimited

    def route(self, country: str) -> Route:
        """Where this tenant's notifications for ``country`` go."""
        if self.enabled_countries is not None and country not in self.enabled_countries:
            supported = sorted(set(routing_table(self.routes)) & self.enabled_countries)
            raise UnsupportedCountry(country, supported)
        return resolve(country, self.routes, self.channel_providers)

    def supported_countries(self) -> list[str]:
        """The countries this tenant can send to."""
        table = set(routing_table(self.routes))
        if self.enabled_countries is not None:
            table &= self.enabled_countries
        return sorted(table)


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """What is stored of an API key: never the key itself, only its hash."""

    key_id: str
    tenant: str
    hash: str
    created_at: datetime
    revoked_at: datetime | None = None


def validate_tenant_id(raw: str) -> str:
    """Tenant ids are lowercase slugs: they travel in headers, URLs and logs."""
    if not TENANT_ID.fullmatch(raw):
        raise HubError(
            "tenant id must be 1-63 characters of a-z, 0-9 and '-', starting with a letter"
            " or digit",
            field="tenant",
        )
    return raw


def new_api_key() -> tuple[str, str]:
    """A new key as (key_id, full key). The id is a lookup handle, not a secret."""
    key_id = secrets.token_hex(6)
    return key_id, f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"


def parse_api_key(key: str) -> str | None:
    """The key id inside a well-formed key, or None."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[2]:
        return None
    return parts[1] if _KEY_ID.fullmatch(parts[1]) else None


def hash_api_key(key: str) -> str:
    """SHA-256 suffices: keys carry 256 random bits, so there is nothing to brute-force."""
    return hashlib.sha256(key.encode()).hexdigest()


def key_matches(key: str, record: ApiKeyRecord) -> bool:
    """Constant-time comparison of a presented key with a stored hash."""
    return hmac.compare_digest(hash_api_key(key), record.hash)
