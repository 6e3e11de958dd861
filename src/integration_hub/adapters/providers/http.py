"""Shared plumbing for HTTP provider adapters.

One pooled ``aiohttp.ClientSession`` per provider, ``Retry-After`` parsing, and
the translation of transport errors (timeouts, refused or dropped connections)
into delivery results, so each adapter only classifies its vendor's answers.
"""

from __future__ import annotations

import dataclasses
import email.utils
import json
import logging
import math
import re
import ssl
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp

from integration_hub.adapters.providers import guard
from integration_hub.domain.delivery import (
    DeliveryResult,
    PermanentFailure,
    ProviderCheck,
    TransientFailure,
)
from integration_hub.domain.outbound import OutboundPolicy, OutboundRefused

log = logging.getLogger(__name__)

# Enough of an error body to diagnose it without storing a whole HTML error page.
SNIPPET_CHARS = 300
# The provider's documented error text, as a tenant may read it.
TENANT_TEXT_CHARS = 200
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]")


@dataclass(frozen=True, slots=True)
class HttpOptions:
    """Connection pool and timeouts of one provider's session."""

    total_timeout: float = 15.0
    connect_timeout: float = 5.0
    pool_limit: int = 100
    # 0 means no per-host cap: a provider is one host, so ``pool_limit`` is the cap.
    pool_limit_per_host: int = 0


def build_session(
    options: HttpOptions, outbound: OutboundPolicy | None = None
) -> aiohttp.ClientSession:
    """A session with a pooled, rule-checked connector and the options' timeouts.

    Call inside the loop. Every connection passes the outbound rule
    (``guard``) after resolution: a refused address is never connected to.
    """
    connector = aiohttp.TCPConnector(
        limit=options.pool_limit,
        limit_per_host=options.pool_limit_per_host,
        **guard.connector_args(outbound or OutboundPolicy()),
    )
    timeout = aiohttp.ClientTimeout(
        total=options.total_timeout, sock_connect=options.connect_timeout
    )
    # raise_for_status stays off: every status is an answer the adapter classifies.
    return aiohttp.ClientSession(connector=connector, timeout=timeout, raise_for_status=False)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or HTTP-date)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    # A date in the past means "now", not a negative delay.
    return max(0.0, seconds)


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every non-empty secret replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def transport_failure(
    provider: str, exc: BaseException, secrets: Iterable[str] = ()
) -> DeliveryResult:
    """Classify an exception raised while talking to a provider over HTTP."""
    refused = guard.refusal_of(exc)
    if refused is not None:
        return guard.refused_failure(provider, refused)
    detail = redact(f"{type(exc).__name__}: {exc}".rstrip(": "), secrets)
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | ssl.SSLCertVerificationError):
        # The peer's certificate did not verify: retrying will not fix it, an
        # operator has to (wrong base URL, missing CA, intercepting proxy).
        return PermanentFailure("tls_error", f"{provider}: {detail}", configuration=True)
    # TimeoutError is an OSError, so it has to be told apart first.
    if isinstance(exc, TimeoutError):
        return TransientFailure("timeout", f"{provider}: no answer in time ({detail})")
    if isinstance(exc, aiohttp.InvalidURL):
        return PermanentFailure("invalid_url", f"{provider}: {detail}", configuration=True)
    if isinstance(exc, aiohttp.ClientConnectionError | OSError):
        return TransientFailure("connection_error", f"{provider}: {detail}")
    return TransientFailure("http_error", f"{provider}: {detail}")


def status_failure(
    provider: str,
    status: int,
    *,
    error_class: str,
    message: str,
    code: str | None,
    retry_after: float | None,
) -> DeliveryResult:
    """Classify by HTTP status alone, for answers whose vendor code we do not know."""
    if status in (408, 425, 429) or status >= 500:
        return TransientFailure(error_class, message, code=code, retry_after=retry_after)
    if status in (401, 403, 404, 405, 407) or 300 <= status < 400:
        # Credentials, account or base URL are wrong: every message would fail alike.
        return PermanentFailure(error_class, message, code=code, configuration=True)
    if 400 <= status < 500:
        return PermanentFailure(error_class, message, code=code)
    return TransientFailure(error_class, f"{provider}: unexpected HTTP {status}", code=code)


@dataclass(frozen=True, slots=True)
class ErrorCodes:
    """A vendor's documented error codes, each with our error class, by outcome."""

    transient: Mapping[int, str]
    configuration: Mapping[int, str]
    permanent: Mapping[int, str]

    def classify(
        self, code: int | None, message: str, *, retry_after: float | None = None
    ) -> DeliveryResult | None:
        """The result for a known ``code``, or None to fall back on the HTTP status."""
        if code is None:
            return None
        text = str(code)
        if code in self.transient:
            return TransientFailure(
                self.transient[code], message, code=text, retry_after=retry_after
            )
        if code in self.configuration:
            return PermanentFailure(
                self.configuration[code], message, code=text, configuration=True
            )
        if code in self.permanent:
            return PermanentFailure(self.permanent[code], message, code=text)
        return None


def int_code(value: Any) -> int | None:
    """A vendor error code sent as a JSON number or a numeric string."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


@dataclass(frozen=True, slots=True)
class HttpReply:
    """A provider's HTTP answer, read in full."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json_object(self) -> dict[str, Any] | None:
        """The body as a JSON object, or None if it is not one."""
        try:
            value = json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            return None
        return value if isinstance(value, dict) else None

    def retry_after(self) -> float | None:
        """The ``Retry-After`` header in seconds, if any."""
        return parse_retry_after(self.headers.get("Retry-After"))

    def snippet(self) -> str:
        """The start of the body as text, for error messages."""
        text = self.body[: SNIPPET_CHARS * 4].decode("utf-8", errors="replace")
        return " ".join(text.split())[:SNIPPET_CHARS]


def tenant_text(text: str, secrets: Iterable[str] = (), limit: int = TENANT_TEXT_CHARS) -> str:
    """A provider's documented error text made fit for a tenant to read.

    Secrets redacted, control and bidi characters dropped, whitespace
    collapsed, at most ``limit`` characters.
    """
    clean = " ".join(_UNPRINTABLE.sub(" ", redact(text, secrets)).split())
    clean = redact(clean, secrets)  # a secret split by a control character is whole again
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


def classify_error(
    provider: str,
    reply: HttpReply,
    *,
    code: int | None,
    text: str | None,
    codes: ErrorCodes,
    secrets: Iterable[str] = (),
) -> DeliveryResult:
    """Classify a non-success answer: vendor code first, HTTP status as the fallback.

    ``text`` is the vendor's documented error message, the only part of the
    body a tenant gets to read (bounded and sanitised). The raw body goes to
    operators only: ``provider_response`` and a debug log line. Otherwise
    whatever answers at the configured URL (an internal service, say) could
    be read back through the attempt's message.
    """
    secrets = tuple(secrets)
    prefix = f"{provider} HTTP {reply.status}" + (f" code {code}" if code is not None else "")
    shown = tenant_text(text, secrets) if text else ""
    message = f"{prefix}: {shown}" if shown else prefix
    raw = redact(reply.snippet(), secrets) or "(empty body)"
    log.debug("%s answered HTTP %d: %s", provider, reply.status, raw)
    retry_after = reply.retry_after()
    code_text = str(code if code is not None else reply.status)
    result: DeliveryResult
    if reply.status == 429 or reply.status >= 500:
        # Whatever the body says (it may not even be JSON), the provider did not
        # take the message, and it asks us to come back later.
        default = "rate_limited" if reply.status == 429 else "provider_error"
        error_class = codes.transient.get(code, default) if code is not None else default
        result = TransientFailure(error_class, message, code=code_text, retry_after=retry_after)
    else:
        known = codes.classify(code, message, retry_after=retry_after)
        result = known or status_failure(
            provider,
            reply.status,
            error_class="provider_rejected",
            message=message,
            code=code_text,
            retry_after=retry_after,
        )
    if isinstance(result, TransientFailure | PermanentFailure):
        result = dataclasses.replace(result, provider_response=raw)
    return result


FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


def form_body(fields: Mapping[str, str]) -> bytes:
    """Form fields encoded as a browser (and aiohttp's FormData) would, to bytes."""
    return urlencode(fields).encode()


def json_body(value: Any) -> bytes:
    """A JSON request body as bytes."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


class HttpProvider:
    """Base of HTTP adapters: one pooled session, owned unless injected."""

    name: str = "http"

    def __init__(
        self,
        *,
        options: HttpOptions | None = None,
        session: aiohttp.ClientSession | None = None,
        outbound: OutboundPolicy | None = None,
    ) -> None:
        self._options = options or HttpOptions()
        self._session = session
        self._owns_session = session is None
        # The strict rule unless the composition root widens it. An injected
        # session keeps its own connector: the caller's (tests') business.
        self._outbound = outbound or OutboundPolicy()
        self._refused: OutboundRefused | None = None

    def _check_base_url(self, url: str) -> None:
        """Remember why ``url`` breaks the rule, so every call is refused unsent."""
        try:
            self._outbound.check_url(url)
        except OutboundRefused as exc:
            self._refused = exc

    def _secrets(self) -> tuple[str, ...]:
        """Strings that must never appear in a returned message."""
        return ()

    def _client(self) -> aiohttp.ClientSession:
        # Built on first use: a session needs the running loop, and nothing does
        # I/O or binds a loop at construction.
        if self._session is None or (self._owns_session and self._session.closed):
            self._session = build_session(self._options, self._outbound)
            self._owns_session = True
        return self._session

    async def _request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> HttpReply | DeliveryResult:
        """Send one request and read the answer; transport errors come back classified.

        ``body`` is already encoded (``form_body``, ``json_body``) and
        ``headers`` name its Content-Type: given a dict, aiohttp would build a
        FormData and a multipart writer per request (11 % of the worker's
        event loop in the drain profile).
        """
        if self._refused is not None:
            return guard.refused_failure(self.name, self._refused)
        try:
            async with self._client().request(
                method,
                url,
                headers=headers,
                data=body,
                # A redirect would replay a POST elsewhere; treat it as an answer.
                allow_redirects=False,
            ) as response:
                body = await response.read()
                return HttpReply(response.status, response.headers, body)
        except (aiohttp.ClientError, OSError) as exc:  # TimeoutError is an OSError
            return transport_failure(self.name, exc, self._secrets())

    async def _probe(
        self,
        url: str,
        headers: Mapping[str, str],
        describe: Callable[[HttpReply], str],
        classify_reply: Callable[[HttpReply], DeliveryResult],
    ) -> ProviderCheck:
        """GET a harmless authenticated resource: 200 means credentials and ids work."""
        reply = await self._request("GET", url, headers=headers)
        if not isinstance(reply, HttpReply):
            return ProviderCheck.failed(reply)
        if reply.status == 200:
            return ProviderCheck(True, redact(describe(reply), self._secrets()))
        return ProviderCheck.failed(classify_reply(reply))

    async def close(self) -> None:
        """Close the session if this adapter created it."""
        if self._owns_session and self._session is not None:
            session, self._session = self._session, None
            if not session.closed:
                await session.close()
