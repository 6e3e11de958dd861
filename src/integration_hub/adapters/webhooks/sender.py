"""The webhook sender: one POST to a tenant's endpoint, behind the outbound rule.

aiohttp with the providers' guarded connector (``providers.guard``): the URL
is checked before anything happens, every address its host resolves to is
checked by the resolver, and the address of each socket about to connect by
the socket factory, so a name rebound to an internal address after the URL
was accepted is refused too. Redirects are not followed (a 3xx is a
failure: following one would let an endpoint send the request anywhere), at
most 64 KiB of a response is read, and every failure is an ``AttemptResult``,
never an exception.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import aiohttp

from integration_hub.adapters.providers import guard
from integration_hub.adapters.providers.http import parse_retry_after
from integration_hub.domain.outbound import OutboundPolicy, OutboundRefused
from integration_hub.domain.webhooks import AttemptOutcome, AttemptResult, outcome_of

MAX_RESPONSE_BYTES = 64 * 1024
"""Read at most this much of a response (the rest is dropped with the connection)."""
EXCERPT_BYTES = 1024
"""Kept of a response for the tenant's delivery log."""
USER_AGENT = "IntegrationHub-Webhooks/1"
_RETRY_AFTER_STATUSES = frozenset({429, 503})


class AiohttpWebhookTransport:
    """``WebhookTransport`` over one aiohttp session (made on first use, in the loop)."""

    def __init__(
        self,
        policy: OutboundPolicy,
        *,
        timeout_seconds: float = 15.0,
        pool_limit: int = 256,
    ) -> None:
        self.policy = policy
        self.timeout_seconds = timeout_seconds
        self._pool_limit = pool_limit
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._pool_limit, **guard.connector_args(self.policy)
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.timeout_seconds),
                raise_for_status=False,
                auto_decompress=False,
            )
        return self._session

    async def send(self, url: str, headers: Mapping[str, str], body: bytes) -> AttemptResult:
        """POST ``body`` once; what came of it (``BLOCKED``: nothing was sent)."""
        try:
            self.policy.check_url(url)
        except OutboundRefused as exc:
            return AttemptResult(AttemptOutcome.BLOCKED, error=exc.message)
        request_headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            **headers,
        }
        started = time.perf_counter()

        def elapsed() -> float:
            return round((time.perf_counter() - started) * 1000.0, 3)

        try:
            async with self._client().post(
                url, data=body, headers=request_headers, allow_redirects=False
            ) as response:
                head = await _read_head(response)
                status = response.status
                retry_after = None
                if status in _RETRY_AFTER_STATUSES:
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
        except TimeoutError:
            return AttemptResult(
                AttemptOutcome.TIMEOUT,
                latency_ms=elapsed(),
                error=f"no response within {self.timeout_seconds:g} s",
            )
        except (aiohttp.ClientError, OSError) as exc:
            refused = guard.refusal_of(exc)
            if refused is not None:
                return AttemptResult(
                    AttemptOutcome.BLOCKED, latency_ms=elapsed(), error=refused.message
                )
            return AttemptResult(
                AttemptOutcome.CONNECTION_ERROR,
                latency_ms=elapsed(),
                error=_describe(exc),
            )
        outcome = outcome_of(status)
        return AttemptResult(
            outcome,
            status_code=status,
            latency_ms=elapsed(),
            error=None if outcome is AttemptOutcome.SUCCESS else f"HTTP {status}",
            retry_after_seconds=retry_after,
            response_excerpt=head[:EXCERPT_BYTES].decode("utf-8", "replace") or None,
        )

    async def close(self) -> None:
        """Close the session and its connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _read_head(response: aiohttp.ClientResponse) -> bytes:
    """Up to ``MAX_RESPONSE_BYTES`` of the body; a longer one is cut off, not read on."""
    chunks: list[bytes] = []
    left = MAX_RESPONSE_BYTES
    while left > 0:
        chunk = await response.content.read(left)
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _describe(exc: BaseException) -> str:
    """A short error for the tenant: the exception's kind and message, no more."""
    text = f"{type(exc).__name__}: {exc}".rstrip(": ")
    return text[:300]


__all__ = ["MAX_RESPONSE_BYTES", "AiohttpWebhookTransport"]
