"""The outbound rule: which URLs, hosts and addresses the hub may connect to.

Every connection the hub opens on a tenant's behalf (providers today, tenant
webhooks later) passes this one rule twice:

- when the setting is stored (``OutboundPolicy.check_url`` / ``check_host``):
  the URL is well formed, uses an allowed scheme, names a real host and
  carries no userinfo, and a literal address is not in a refused range;
- when connecting (``OutboundPolicy.check_address``): every address the name
  resolves to is checked, so a public name pointing at an internal address
  (or re-pointed there later) is refused too.

Refused: loopback, private (RFC 1918, unique-local IPv6, including the AWS
metadata address ``fd00:ec2::254``), link-local (``169.254.169.254``),
multicast, unspecified, reserved, and whatever else is not globally routable
(shared 100.64/10, documentation and benchmarking ranges); IPv6 forms that
embed an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64, 6to4) are judged
by that address. Networks listed in ``allowed_networks`` are exempt: local
development and the test suites' fake servers.

Pure: ``ipaddress`` and ``urllib.parse`` only, no I/O (resolution is the
caller's, at the edge).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

SETTING = "IHUB_PROVIDER_ALLOWED_NETWORKS"
HTTP_SETTING = "IHUB_PROVIDER_ALLOW_HTTP"

# What ``inet_aton`` (and so every resolver) reads as an IPv4 address:
# 1 to 4 parts, each decimal, octal (leading 0) or hex (0x), e.g. 2130706433,
# 0177.0.0.1, 0x7f.1, 127.1. Such a "name" is an address in disguise.
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}\.?$")
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f-\x9f]")


class OutboundRefused(ValueError):
    """This outbound URL, host or address is refused by the outbound rule."""

    def __init__(self, message: str, *, rule: str) -> None:
        self.message = message
        self.rule = rule
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Target:
    """A checked URL's host and port; ``address`` when the host is a literal address."""

    scheme: str
    host: str
    port: int
    address: IPAddress | None


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDR strings to networks; ValueError naming the one that is not a network."""
    networks: list[IPNetwork] = []
    for raw in values:
        text = raw.strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(f"{text!r} is not a network in CIDR form (e.g. 10.0.0.0/8)") from None
    return tuple(networks)


def refused_range(address: IPAddress) -> str | None:
    """The name of the refused range ``address`` falls in, or None if it is public."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            inner = refused_range(embedded)
            return None if inner is None else f"{inner} (embedded in an IPv6 address)"
        address = ipaddress.IPv6Address(address.packed)  # drop any zone id
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_reserved:
        return "reserved"
    if address.is_private:
        return "private"
    if not address.is_global:
        return "not globally routable"
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form carries (mapped, compatible, NAT64, 6to4)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    plain = ipaddress.IPv6Address(address.packed)
    if plain in _NAT64 or plain in _IPV4_COMPATIBLE:
        if plain in _IPV4_COMPATIBLE and int(plain) <= 1:
            return None  # :: and ::1 are themselves (unspecified, loopback)
        return ipaddress.IPv4Address(int(plain) & 0xFFFFFFFF)
    if plain in _NAT64_LOCAL:
        # Local-use NAT64: the embedded position depends on the prefix length,
        # so there is nothing reliable to judge; treat the range as private.
        return ipaddress.IPv4Address("10.0.0.0")
    return None


def parse_address(text: str) -> IPAddress | None:
    """``text`` as an IP address (any form a resolver accepts), or None if it is a name."""
    host = text.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if ":" in host:
        try:
            return ipaddress.IPv6Address(unquote(host))
        except ValueError:
            raise OutboundRefused(f"{text!r} is not a valid IPv6 address", rule="host") from None
    if _NUMERIC_HOST.match(host):
        return _legacy_ipv4(text, host.rstrip("."))
    return None


def _legacy_ipv4(text: str, host: str) -> ipaddress.IPv4Address:
    parts = host.split(".")
    try:
        numbers = [_number(p) for p in parts]
    except ValueError:
        raise OutboundRefused(f"{text!r} is not a valid IPv4 address", rule="host") from None
    *head, last = numbers
    room = 4 - len(head)
    if any(n > 255 for n in head) or last >= 256**room:
        raise OutboundRefused(f"{text!r} is not a valid IPv4 address", rule="host")
    value = 0
    for n in head:
        value = value * 256 + n
    return ipaddress.IPv4Address(value * 256**room + last)


def _number(part: str) -> int:
    if part.startswith("0x"):
        return int(part, 16)
    return int(part, 8) if len(part) > 1 and part.startswith("0") else int(part)


def _check_name(text: str, host: str, setting: str = SETTING) -> str:
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise OutboundRefused(f"{text!r} is not a valid host name", rule="host") from None
    name = ascii_host.rstrip(".")
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        raise OutboundRefused(f"{text!r} is not a valid host name", rule="host")
    if name == "localhost" or name.endswith(".localhost"):
        # RFC 6761: always the local machine, whatever DNS says.
        raise OutboundRefused(
            f"host {text!r} is loopback; refused by the outbound rule ({setting})",
            rule="loopback",
        )
    return name


@dataclass(frozen=True, slots=True)
class OutboundPolicy:
    """The outbound rule with its exemptions; the default refuses everything internal."""

    allowed_networks: tuple[IPNetwork, ...] = ()
    allow_http: bool = False
    setting: str = SETTING
    """The setting that widens this rule, named in refusals (providers', webhooks')."""
    http_setting: str = HTTP_SETTING

    @classmethod
    def of(
        cls,
        networks: Iterable[str] = (),
        *,
        allow_http: bool = False,
        setting: str = SETTING,
        http_setting: str = HTTP_SETTING,
    ) -> OutboundPolicy:
        """A policy from CIDR strings; ValueError for one that is not a network."""
        return cls(parse_networks(networks), allow_http, setting, http_setting)

    def allowed(self, address: IPAddress) -> bool:
        """Whether ``address`` is inside one of the allowed networks."""
        plain = address
        if isinstance(address, ipaddress.IPv6Address):
            plain = address.ipv4_mapped or ipaddress.IPv6Address(address.packed)
        return any(plain in network for network in self.allowed_networks)

    def refusal(self, address: IPAddress) -> str | None:
        """Why ``address`` is refused (the range's name), or None if it may be used."""
        if self.allowed(address):
            return None
        return refused_range(address)

    def check_address(self, address: IPAddress | str, host: str | None = None) -> None:
        """OutboundRefused if a connection to ``address`` (of ``host``) is refused."""
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        why = self.refusal(ip)
        if why is None:
            return
        of = f" of {host}" if host is not None and host != str(ip) else ""
        raise OutboundRefused(
            f"address {ip}{of} is {why}; refused by the outbound rule ({self.setting})",
            rule=why,
        )

    def check_host(self, text: str) -> tuple[str, IPAddress | None]:
        """A host name or address as configured: the name (or address) and the literal address."""
        if not text or _CONTROL_OR_SPACE.search(text):
            raise OutboundRefused(f"{text!r} is not a valid host", rule="host")
        address = parse_address(text)
        if address is None:
            return _check_name(text, text.strip().lower(), self.setting), None
        self.check_address(address, text)
        return str(address), address

    def check_url(self, url: str, *, schemes: Iterable[str] = ("https",)) -> Target:
        """A URL as configured; OutboundRefused naming what is wrong with it.

        ``schemes`` are the secure schemes the caller speaks; plain ``http`` is
        added only when the policy allows it (local development).
        """
        allowed = set(schemes)
        if self.allow_http and "https" in allowed:
            allowed.add("http")
        if not isinstance(url, str) or _CONTROL_OR_SPACE.search(url):
            raise OutboundRefused("not a valid URL (spaces or control characters)", rule="url")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise OutboundRefused(f"not a valid URL: {exc}", rule="url") from None
        scheme = parts.scheme.lower()
        if scheme not in allowed:
            hint = f" (plain http needs {self.http_setting}=true)" if scheme == "http" else ""
            raise OutboundRefused(
                f"scheme {scheme or '(none)'!r} is not allowed; use {' or '.join(sorted(allowed))}"
                + hint,
                rule="scheme",
            )
        if "@" in parts.netloc:
            raise OutboundRefused(
                "a URL must not carry a user name or password (userinfo)", rule="userinfo"
            )
        raw_host = parts.hostname or ""  # lower case, brackets of IPv6 removed
        if not raw_host:
            raise OutboundRefused("a URL must name a host", rule="host")
        host, address = self.check_host(raw_host)
        default = 443 if scheme == "https" else 80
        return Target(scheme, host, port if port is not None else default, address)
