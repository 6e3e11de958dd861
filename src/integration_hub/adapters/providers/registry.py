"""Provider instances per tenant, built from the tenant's stored configuration.

The sandbox is shared; every other provider is built once per (tenant,
provider) from the tenant's configuration and rebuilt when that changes, so
new credentials take effect without a restart. Each instance keeps its own
pooled connections.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from integration_hub.domain.errors import HubError, ProviderNotConfigured
from integration_hub.domain.models import canonical_json
from integration_hub.domain.routing import Channel
from integration_hub.ports import Clock, CredentialStore, Provider


def _smtp(config: dict[str, Any]) -> Provider:
    from integration_hub.adapters.providers.smtp import SmtpProvider, SmtpSettings

    return SmtpProvider(SmtpSettings.model_validate(config))


def _twilio(config: dict[str, Any]) -> Provider:
    from integration_hub.adapters.providers.twilio import TwilioProvider, TwilioSettings

    return TwilioProvider(TwilioSettings.model_validate(config))


def _whatsapp(config: dict[str, Any]) -> Provider:
    from integration_hub.adapters.providers.whatsapp import WhatsAppProvider, WhatsAppSettings

    return WhatsAppProvider(WhatsAppSettings.model_validate(config))


def _ses(config: dict[str, Any]) -> Provider:
    try:
        from integration_hub.adapters.providers.ses import SesProvider, SesSettings
    except ImportError:  # aiobotocore is the [aws] extra
        raise ProviderNotConfigured(
            "the ses provider needs the AWS extra: pip install 'integration-hub[aws]'"
        ) from None
    return SesProvider(SesSettings.model_validate(config))


@dataclass(frozen=True, slots=True)
class ProviderKind:
    """A provider adapter: the channels it serves and how to build it."""

    channels: frozenset[Channel]
    build: Callable[[dict[str, Any]], Provider]


KINDS: Mapping[str, ProviderKind] = {
    "smtp": ProviderKind(frozenset({Channel.EMAIL}), _smtp),
    "ses": ProviderKind(frozenset({Channel.EMAIL}), _ses),
    "twilio": ProviderKind(frozenset({Channel.SMS}), _twilio),
    "whatsapp_cloud": ProviderKind(frozenset({Channel.WHATSAPP}), _whatsapp),
}


def describe_invalid(name: str, exc: ValidationError) -> str:
    """Which fields are wrong, never their values (they may be secrets)."""
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()
    )
    return f"invalid {name} configuration: {problems}"


def build(name: str, config: dict[str, Any]) -> Provider:
    """A provider of kind ``name``; ProviderNotConfigured if unknown or invalid."""
    kind = KINDS.get(name)
    if kind is None:
        raise ProviderNotConfigured(
            f"unknown provider {name!r}; known: sandbox, {', '.join(sorted(KINDS))}"
        )
    try:
        return kind.build(config)
    except ValidationError as exc:
        raise ProviderNotConfigured(describe_invalid(name, exc)) from None


@dataclass(slots=True)
class _Entry:
    digest: str
    provider: Provider
    checked_at: float


class ProviderRegistry:
    """The ProviderDirectory port: sandbox plus per-tenant configured providers."""

    def __init__(
        self,
        credentials: CredentialStore,
        sandbox: Mapping[Channel, Provider],
        clock: Clock,
        *,
        ttl_seconds: float = 2.0,
    ) -> None:
        self.credentials = credentials
        self.sandbox = dict(sandbox)
        self.clock = clock
        self.ttl = ttl_seconds
        self._instances: dict[tuple[str, str], _Entry] = {}
        self._retired: list[Provider] = []
        self._lock = asyncio.Lock()

    async def get(self, tenant: str, channel: Channel, name: str) -> Provider:
        """The provider to call for this tenant, channel and provider name."""
        if name == "sandbox":
            return self.sandbox[channel]
        kind = KINDS.get(name)
        if kind is None or channel not in kind.channels:
            serves = ", ".join(sorted(str(c) for c in kind.channels)) if kind else "nothing"
            raise ProviderNotConfigured(
                f"provider {name!r} cannot send {channel} (it serves {serves})"
            )
        now = self.clock.now()
        entry = self._instances.get((tenant, name))
        if entry is not None and now - entry.checked_at < self.ttl:
            return entry.provider
        async with self._lock:
            return await self._refresh(tenant, name, now)

    async def _refresh(self, tenant: str, name: str, now: float) -> Provider:
        try:
            config = await self.credentials.get_credentials(tenant, name)
        except ProviderNotConfigured:
            raise
        except HubError as exc:
            # A missing master key or a ciphertext that does not decrypt: an
            # operator problem, never a reason to retry.
            raise ProviderNotConfigured(
                f"settings of provider {name!r} cannot be read: {exc.message}"
            ) from None
        entry = self._instances.get((tenant, name))
        if config is None:
            if entry is not None:
                self._retire(tenant, name)
            raise ProviderNotConfigured(
                f"tenant {tenant!r} has no configuration for provider {name!r}"
                f" (ihub tenants set-credentials {tenant} {name} --from-file FILE)"
            )
        digest = hashlib.sha256(canonical_json(config)).hexdigest()
        if entry is not None and entry.digest == digest:
            entry.checked_at = now
            return entry.provider
        provider = build(name, config)
        if entry is not None:
            self._retire(tenant, name)
        self._instances[(tenant, name)] = _Entry(digest, provider, now)
        return provider

    def _retire(self, tenant: str, name: str) -> None:
        # Sends in flight may still use the old instance: close it at shutdown.
        old = self._instances.pop((tenant, name))
        self._retired.append(old.provider)

    async def close(self) -> None:
        """Close every provider instance ever built."""
        providers = [e.provider for e in self._instances.values()] + self._retired
        providers += list(self.sandbox.values())
        self._instances.clear()
        self._retired.clear()
        for provider in providers:
            await provider.close()
