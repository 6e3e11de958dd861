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
from urllib.parse import quote

from pydantic import ValidationError

from integration_hub.domain.errors import HubError, ProviderNotConfigured, Unavailable
from integration_hub.domain.models import canonical_json
from integration_hub.domain.outbound import OutboundPolicy, OutboundRefused
from integration_hub.domain.routing import Channel
from integration_hub.ports import Clock, CredentialStore, Provider


@dataclass(frozen=True, slots=True)
class Callbacks:
    """Where a provider built for one tenant reports delivery receipts back to the hub.

    The public URL is the operator's (``IHUB_PUBLIC_URL``), not a tenant
    setting: it is where the hub's own receipt endpoints answer, so it is not
    passed through the outbound rule, which guards what the hub connects to.
    """

    public_url: str | None = None
    tenant: str | None = None

    def url(self, provider: str) -> str | None:
        """``{public_url}/v1/receipts/{provider}/{tenant}``, or None without a public URL."""
        if not self.public_url or not self.tenant:
            return None
        tenant = quote(self.tenant, safe="")
        return f"{self.public_url.rstrip('/')}/v1/receipts/{provider}/{tenant}"


NO_CALLBACKS = Callbacks()

# Each builder validates the settings, passes the outbound rule over every
# URL and host in them (set time), and builds the adapter with the rule (which
# it applies again at connect time, after resolution).


def _smtp(config: dict[str, Any], outbound: OutboundPolicy, _: Callbacks) -> Provider:
    from integration_hub.adapters.providers.smtp import SmtpProvider, SmtpSettings

    settings = SmtpSettings.model_validate(config)
    _check_host(outbound, "host", settings.host)
    return SmtpProvider(settings, outbound=outbound)


def _twilio(config: dict[str, Any], outbound: OutboundPolicy, callbacks: Callbacks) -> Provider:
    from integration_hub.adapters.providers.twilio import TwilioProvider, TwilioSettings

    settings = TwilioSettings.model_validate(config)
    _check_url(outbound, "base_url", settings.base_url)
    if settings.status_callback is not None:
        # Twilio, not the hub, calls it; still no internal address, no userinfo.
        _check_url(outbound, "status_callback", settings.status_callback)
    # With a public URL the hub's own endpoint takes the receipts: a tenant's
    # own status_callback is used only by a hub that cannot receive them.
    return TwilioProvider(settings, outbound=outbound, status_callback=callbacks.url("twilio"))


def _twilio_whatsapp(
    config: dict[str, Any], outbound: OutboundPolicy, callbacks: Callbacks
) -> Provider:
    from integration_hub.adapters.providers.twilio_whatsapp import (
        TwilioWhatsAppProvider,
        TwilioWhatsAppSettings,
    )

    settings = TwilioWhatsAppSettings.model_validate(config)
    _check_url(outbound, "base_url", settings.base_url)
    if settings.status_callback is not None:
        _check_url(outbound, "status_callback", settings.status_callback)
    # Its own receipt endpoint: verified with these settings' auth token, and
    # recorded under this provider's name, which the notifications carry.
    callback = callbacks.url("twilio_whatsapp")
    return TwilioWhatsAppProvider(settings, outbound=outbound, status_callback=callback)


def _whatsapp(config: dict[str, Any], outbound: OutboundPolicy, _: Callbacks) -> Provider:
    from integration_hub.adapters.providers.whatsapp import WhatsAppProvider, WhatsAppSettings

    settings = WhatsAppSettings.model_validate(config)
    _check_url(outbound, "base_url", settings.base_url)
    return WhatsAppProvider(settings, outbound=outbound)


def _vonage(config: dict[str, Any], outbound: OutboundPolicy, _: Callbacks) -> Provider:
    from integration_hub.adapters.providers.vonage import VonageProvider, VonageSettings

    settings = VonageSettings.model_validate(config)
    _check_url(outbound, "base_url", settings.base_url)
    if settings.callback is not None:
        # Vonage, not the hub, calls it; still no internal address, no userinfo.
        # The hub has no Vonage receipt endpoint yet, so the public URL is not used.
        _check_url(outbound, "callback", settings.callback)
    return VonageProvider(settings, outbound=outbound)


def _ses(config: dict[str, Any], outbound: OutboundPolicy, _: Callbacks) -> Provider:
    try:
        from integration_hub.adapters.providers.ses import SesProvider, SesSettings
    except ImportError:  # aiobotocore is the [aws] extra
        raise ProviderNotConfigured(
            "the ses provider needs the AWS extra: pip install 'integration-hub[aws]'"
        ) from None
    settings = SesSettings.model_validate(config)
    if settings.endpoint_url is not None:
        _check_url(outbound, "endpoint_url", settings.endpoint_url)
    return SesProvider(settings, outbound=outbound)


def _sns(config: dict[str, Any], outbound: OutboundPolicy, _: Callbacks) -> Provider:
    try:
        from integration_hub.adapters.providers.sns import SnsProvider, SnsSettings
    except ImportError:  # aiobotocore is the [aws] extra
        raise ProviderNotConfigured(
            "the sns provider needs the AWS extra: pip install 'integration-hub[aws]'"
        ) from None
    settings = SnsSettings.model_validate(config)
    if settings.endpoint_url is not None:
        _check_url(outbound, "endpoint_url", settings.endpoint_url)
    return SnsProvider(settings, outbound=outbound)


def _check_url(outbound: OutboundPolicy, field: str, url: str) -> None:
    try:
        outbound.check_url(url)
    except OutboundRefused as exc:
        raise ProviderNotConfigured(f"{field}: {exc.message}", field=field) from None


def _check_host(outbound: OutboundPolicy, field: str, host: str) -> None:
    try:
        outbound.check_host(host)
    except OutboundRefused as exc:
        raise ProviderNotConfigured(f"{field}: {exc.message}", field=field) from None


@dataclass(frozen=True, slots=True)
class ProviderKind:
    """A provider adapter: the channels it serves and how to build it."""

    channels: frozenset[Channel]
    build: Callable[[dict[str, Any], OutboundPolicy, Callbacks], Provider]


KINDS: Mapping[str, ProviderKind] = {
    "smtp": ProviderKind(frozenset({Channel.EMAIL}), _smtp),
    "ses": ProviderKind(frozenset({Channel.EMAIL}), _ses),
    "twilio": ProviderKind(frozenset({Channel.SMS}), _twilio),
    "vonage": ProviderKind(frozenset({Channel.SMS}), _vonage),
    "sns": ProviderKind(frozenset({Channel.SMS}), _sns),
    "whatsapp_cloud": ProviderKind(frozenset({Channel.WHATSAPP}), _whatsapp),
    "twilio_whatsapp": ProviderKind(frozenset({Channel.WHATSAPP}), _twilio_whatsapp),
}


def describe_invalid(name: str, exc: ValidationError) -> str:
    """Which fields are wrong, never their values (they may be secrets)."""
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()
    )
    return f"invalid {name} configuration: {problems}"


def build(
    name: str,
    config: dict[str, Any],
    outbound: OutboundPolicy | None = None,
    *,
    callbacks: Callbacks = NO_CALLBACKS,
) -> Provider:
    """A provider of kind ``name``; ProviderNotConfigured if unknown, invalid or refused.

    ``outbound`` is the outbound rule (the strict default refuses every
    internal address); a URL or host it refuses names its field in the error.
    ``callbacks`` says where the provider asks for receipts (none by default).
    """
    kind = KINDS.get(name)
    if kind is None:
        raise ProviderNotConfigured(
            f"unknown provider {name!r}; known: sandbox, {', '.join(sorted(KINDS))}"
        )
    try:
        return kind.build(config, outbound or OutboundPolicy(), callbacks)
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
        outbound: OutboundPolicy | None = None,
        public_url: str | None = None,
    ) -> None:
        self.outbound = outbound or OutboundPolicy()
        # The hub's public URL: providers that can report receipts are told
        # to report them to the tenant's receipt endpoint under it.
        self.public_url = public_url
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
        except (ProviderNotConfigured, Unavailable):
            # Unavailable: the store holding the settings is down for now. Not
            # "not configured" (permanent: the notification would end FAILED);
            # it propagates, and the message comes back after the outage.
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
        # Stored settings pass the rule again: they may predate it, or the
        # allowed networks may have shrunk since they were set.
        callbacks = Callbacks(self.public_url, tenant)
        provider = build(name, config, self.outbound, callbacks=callbacks)
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
