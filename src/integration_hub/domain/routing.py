"""Country normalisation and tenant + country routing to a channel and provider."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from integration_hub.domain.errors import HubError, UnsupportedCountry


class Channel(StrEnum):
    """Delivery channels."""

    EMAIL = "email"
    SMS = "sms"
    WHATSAPP = "whatsapp"


@dataclass(frozen=True, slots=True)
class Route:
    """Where a notification for one country goes."""

    channel: Channel
    provider: str = "sandbox"


_ISO_ALPHA2 = re.compile(r"^[A-Z]{2}$")
COUNTRY_PATTERN = r"^[A-Za-z]{2}$"
"""What ``normalize_country`` accepts (around any white space HTTP strips), as documented."""

# ISO 3166-1 has no "UK"; it is reserved for the United Kingdom, whose code is
# GB. People write UK, so we accept it and store the ISO code.
ALIASES: Mapping[str, str] = {"UK": "GB"}

DEFAULT_ROUTES: Mapping[str, Route] = {
    **{c: Route(Channel.EMAIL) for c in ("ES", "FR", "IT", "GR")},
    **{c: Route(Channel.WHATSAPP) for c in ("MX", "AR", "CO")},
    **{c: Route(Channel.SMS) for c in ("US", "CA", "GB")},
}


def normalize_country(raw: str) -> str:
    """Return the ISO 3166-1 alpha-2 code for ``raw`` (case-insensitive, UK → GB)."""
    # ASCII first: Unicode upper-casing turns "ß" into "SS" and "ıt" into "IT".
    code = raw.strip().upper() if raw.isascii() else ""
    if not _ISO_ALPHA2.fullmatch(code):
        raise HubError(f"{raw!r} is not an ISO 3166-1 alpha-2 country code", field="X-Country")
    return ALIASES.get(code, code)


def resolve(
    country: str,
    overrides: Mapping[str, Route] | None = None,
    channel_providers: Mapping[Channel, str] | None = None,
) -> Route:
    """Route a normalised country: the tenant's country overrides, then the defaults.

    A default route uses the tenant's provider for its channel when one is set
    (``{email: smtp}``); an explicit country override names its own provider.
    """
    table = routing_table(overrides)
    try:
        route = table[country]
    except KeyError:
        raise UnsupportedCountry(country, list(table)) from None
    if channel_providers and country not in (overrides or {}):
        provider = channel_providers.get(route.channel)
        if provider:
            return Route(route.channel, provider)
    return route


def routing_table(overrides: Mapping[str, Route] | None = None) -> dict[str, Route]:
    """The effective routing table: defaults, then the tenant's overrides."""
    return {**DEFAULT_ROUTES, **(overrides or {})}
