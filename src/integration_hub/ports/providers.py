"""Delivery providers and the per-tenant directory that finds them."""

from __future__ import annotations

from typing import Protocol

from integration_hub.domain.delivery import DeliveryResult, OutboundMessage, ProviderCheck
from integration_hub.domain.routing import Channel


class Provider(Protocol):
    """A delivery channel's external integration."""

    name: str

    async def send(self, message: OutboundMessage) -> DeliveryResult:
        """Deliver once; classify every failure, never raise for a provider error."""
        ...

    async def check(self) -> ProviderCheck:
        """Verify configuration and credentials without sending a message."""
        ...

    async def close(self) -> None:
        """Release sessions and connections."""
        ...


class ProviderDirectory(Protocol):
    """Finds the provider instance for a tenant, channel and provider name.

    Raises ProviderNotConfigured (a domain error) when the tenant has no usable
    configuration for it: a configuration failure, not a transient one.
    """

    async def get(self, tenant: str, channel: Channel, name: str) -> Provider:
        """The provider to call."""
        ...

    async def close(self) -> None:
        """Close every provider instance."""
        ...
