"""The outbound rule at connect time, for every provider transport.

``domain.outbound`` says which addresses are refused; this module applies it
where connections are made:

- aiohttp (Twilio, WhatsApp, and SES through aiobotocore): a resolver that
  checks every address a name resolves to and hands back only checked ones
  (aiohttp then connects to exactly those, so a DNS answer that changes
  between check and connect cannot slip in), and a socket factory that checks
  the address of each socket about to connect, which also covers literal
  addresses (aiohttp does not resolve those);
- SMTP: ``connect_checked`` resolves, checks, and connects to a checked
  address itself.

A refusal is ``OutboundBlocked``, an OSError (so transports carry it like a
connection error) that ``refusal_of`` finds again to report a
``configuration`` outcome instead of a transient one.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from integration_hub.domain.delivery import PermanentFailure
from integration_hub.domain.outbound import OutboundPolicy, OutboundRefused


class OutboundBlocked(OSError):
    """A connection the outbound rule refuses; nothing was sent."""

    def __init__(self, refused: OutboundRefused) -> None:
        self.refused = refused
        super().__init__(refused.message)


def _check(policy: OutboundPolicy, address: str, host: str | None) -> None:
    try:
        policy.check_address(address, host)
    except OutboundRefused as exc:
        raise OutboundBlocked(exc) from None


class GuardedResolver(AbstractResolver):
    """Resolves with aiohttp's default resolver, then refuses any address the rule refuses."""

    def __init__(self, policy: OutboundPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Every address of ``host``, all checked: one refused address refuses the name."""
        if self._inner is None:
            self._inner = aiohttp.DefaultResolver()
        found = await self._inner.resolve(host, port, family)
        for entry in found:
            _check(self.policy, entry["host"], host.rstrip("."))
        return found

    async def close(self) -> None:
        """Close the wrapped resolver."""
        if self._inner is not None:
            await self._inner.close()


def socket_factory(policy: OutboundPolicy) -> Any:
    """An aiohappyeyeballs socket factory that checks the address before the socket exists."""

    def make(addr_info: tuple[Any, ...]) -> socket.socket:
        family, kind, proto, _canonname, sockaddr = addr_info
        _check(policy, str(sockaddr[0]), None)
        sock = socket.socket(family=family, type=kind, proto=proto)
        sock.setblocking(False)
        return sock

    return make


def connector_args(policy: OutboundPolicy) -> dict[str, Any]:
    """TCPConnector keyword arguments that put the rule on every connection."""
    return {"resolver": GuardedResolver(policy), "socket_factory": socket_factory(policy)}


def refusal_of(exc: BaseException | None) -> OutboundRefused | None:
    """The outbound refusal behind a transport error, if that is what it is."""
    seen = exc
    for _ in range(6):
        if seen is None:
            return None
        if isinstance(seen, OutboundBlocked):
            return seen.refused
        if isinstance(seen, OutboundRefused):
            return seen
        nested = getattr(seen, "os_error", None)  # aiohttp.ClientConnectorError
        seen = nested if isinstance(nested, BaseException) else (seen.__cause__ or seen.__context__)
    return None


def refused_failure(provider: str, refused: OutboundRefused) -> PermanentFailure:
    """The attempt result of a refused connection: an operator has to fix the setting."""
    return PermanentFailure(
        "outbound_refused", f"{provider}: {refused.message}", configuration=True
    )


async def connect_checked(
    policy: OutboundPolicy, host: str, port: int, connect_seconds: float
) -> socket.socket:
    """A TCP socket connected to a checked address of ``host`` (every address is checked)."""
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(
        loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout=connect_seconds
    )
    for _family, _kind, _proto, _name, sockaddr in infos:
        _check(policy, str(sockaddr[0]), host)
    last: OSError | None = None
    for family, kind, proto, _name, sockaddr in infos:
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, sockaddr), timeout=connect_seconds)
        except (OSError, TimeoutError) as exc:
            sock.close()
            if isinstance(exc, TimeoutError):
                raise
            last = exc
            continue
        return sock
    raise last or OSError(f"{host} has no address")
