"""Amazon SNS over HTTPS: message signature verification and subscription confirmation.

As AWS documents it: the string to sign is, for each field below that is
present, its name, a newline, its value, a newline, in this order:

- ``Notification``: Message, MessageId, Subject (only if present), Timestamp,
  TopicArn, Type;
- ``SubscriptionConfirmation`` and ``UnsubscribeConfirmation``: Message,
  MessageId, SubscribeURL, Timestamp, Token, TopicArn, Type.

``Signature`` is the base64 RSA PKCS#1 v1.5 signature of that string, with
SHA-1 for ``SignatureVersion`` 1 and SHA-256 for 2, by the key of the X.509
certificate at ``SigningCertURL``. That URL is trusted only over https from
``sns.<region>.amazonaws.com`` (or ``.amazonaws.com.cn``), fetched with TLS
verification, without redirects, and kept in a bounded cache. The topic must
be one the tenant configured, checked before any certificate is fetched so a
stranger's topic costs us no request.

Tests trust a local HTTPS server through ``CertFetch`` (``ca_file`` and
``connect_to``): the host rule, the TLS check of the SNS host name, the
certificate and the signature are checked exactly as in production; only
where the name connects to, and which CA vouches for it, change.
"""

from __future__ import annotations

import base64
import binascii
import re
import socket
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from integration_hub.adapters.receipts.common import (
    BadSignature,
    MalformedReceipt,
    UntrustedSource,
    field,
    iso_time,
    load_object,
    optional_field,
)

NOTIFICATION: Final = "Notification"
SUBSCRIPTION_CONFIRMATION: Final = "SubscriptionConfirmation"
UNSUBSCRIBE_CONFIRMATION: Final = "UnsubscribeConfirmation"
TYPES: Final = frozenset({NOTIFICATION, SUBSCRIPTION_CONFIRMATION, UNSUBSCRIBE_CONFIRMATION})

_NOTIFICATION_FIELDS: Final = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_CONFIRMATION_FIELDS: Final = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)
_HASHES: Mapping[str, Callable[[], hashes.HashAlgorithm]] = {
    "1": hashes.SHA1,
    "2": hashes.SHA256,
}
SNS_HOST: Final = re.compile(r"^sns\.[a-z0-9]+(?:-[a-z0-9]+)+\.amazonaws\.com(?:\.cn)?$")
"""``sns.<region>.amazonaws.com``, or ``.amazonaws.com.cn`` in the China regions."""
MAX_CERT_BYTES: Final = 64 * 1024


@dataclass(frozen=True, slots=True)
class CertFetch:
    """How signing certificates are fetched; the default is production's.

    ``ca_file`` and ``connect_to`` are for tests only (off by default): a CA
    to trust instead of the system's, and the address every SNS host name
    connects to instead of its DNS answer.
    """

    ca_file: str | None = None
    connect_to: tuple[str, int] | None = None
    timeout: float = 5.0
    cache_size: int = 32


@dataclass(frozen=True, slots=True)
class SnsMessage:
    """A verified SNS message."""

    type: str
    message_id: str
    topic_arn: str
    message: str
    timestamp: datetime
    subject: str | None = None
    subscribe_url: str | None = None


def string_to_sign(message: Mapping[str, object]) -> bytes:
    """The canonical string AWS signs for this message's ``Type``."""
    kind = field(message, "Type")
    if kind not in TYPES:
        raise MalformedReceipt("Type is not an SNS message type")
    names = _NOTIFICATION_FIELDS if kind == NOTIFICATION else _CONFIRMATION_FIELDS
    parts: list[str] = []
    for name in names:
        if name == "Subject":
            value = optional_field(message, name)
            if value is None:
                continue
        elif name == "Message":
            # A notification's Message may be empty; every other field may not.
            value = optional_field(message, name)
            if value is None:
                raise MalformedReceipt("Message is missing")
        else:
            value = field(message, name)
        parts.append(f"{name}\n{value}\n")
    return "".join(parts).encode("utf-8")


def check_sns_url(url: str, what: str, *, pem: bool = False) -> str:
    """``url`` if it is https on an SNS host (no user, no other port), else UntrustedSource."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UntrustedSource(f"{what} is not a URL") from exc
    host = parts.hostname or ""
    if parts.scheme != "https":
        raise UntrustedSource(f"{what} is not https")
    if parts.username is not None or parts.password is not None or port not in (None, 443):
        raise UntrustedSource(f"{what} carries a user or a port")
    if not SNS_HOST.fullmatch(host) or parts.netloc.lower().split(":")[0] != host:
        raise UntrustedSource(f"{what} is not an Amazon SNS host")
    if pem and not parts.path.endswith(".pem"):
        raise UntrustedSource(f"{what} is not a certificate")
    return url


class _FixedResolver(AbstractResolver):
    """Every name to one address (tests: SNS host names to the local server)."""

    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._port = port

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The one address, whatever ``host`` is."""
        return [
            ResolveResult(
                hostname=host,
                host=self._host,
                port=self._port,
                family=socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        """Nothing to release."""


class SnsVerifier:
    """Verifies SNS messages; holds the certificate cache and its HTTP session."""

    def __init__(
        self, fetch: CertFetch | None = None, *, now: Callable[[], float] = time.time
    ) -> None:
        self.fetch = fetch or CertFetch()
        self._now = now
        self._certificates: OrderedDict[str, x509.Certificate] = OrderedDict()
        self._session: aiohttp.ClientSession | None = None
        self.fetches = 0
        """Certificates fetched (not served from the cache): for tests and metrics."""

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            context = ssl.create_default_context(cafile=self.fetch.ca_file)
            resolver = _FixedResolver(*self.fetch.connect_to) if self.fetch.connect_to else None
            connector = aiohttp.TCPConnector(ssl=context, resolver=resolver, limit=4)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.fetch.timeout),
            )
        return self._session

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def certificate(self, url: str) -> x509.Certificate:
        """The signing certificate at ``url`` (an SNS https URL), from the cache if there."""
        check_sns_url(url, "SigningCertURL", pem=True)
        cached = self._certificates.get(url)
        if cached is not None:
            self._certificates.move_to_end(url)
            return cached
        try:
            async with self._client().get(url, allow_redirects=False) as reply:
                if reply.status != 200:
                    raise UntrustedSource(f"SigningCertURL answered {reply.status}")
                pem = await reply.content.read(MAX_CERT_BYTES + 1)
        except (aiohttp.ClientError, TimeoutError, ssl.SSLError, OSError) as exc:
            raise UntrustedSource("the signing certificate could not be fetched") from exc
        if len(pem) > MAX_CERT_BYTES:
            raise UntrustedSource("the signing certificate is too large")
        try:
            certificate = x509.load_pem_x509_certificate(pem)
        except ValueError as exc:
            raise UntrustedSource("SigningCertURL is not a PEM certificate") from exc
        self.fetches += 1
        self._certificates[url] = certificate
        while len(self._certificates) > self.fetch.cache_size:
            self._certificates.popitem(last=False)
        return certificate

    async def verify(self, body: bytes, topics: Collection[str]) -> SnsMessage:
        """The message in ``body`` once its topic, certificate and signature are checked.

        ``topics`` are the TopicArns this endpoint accepts; any other is
        UntrustedSource. A bad signature is BadSignature, a body that is not
        an SNS message MalformedReceipt.
        """
        message = load_object(body)
        signed = string_to_sign(message)
        topic = field(message, "TopicArn")
        if topic not in topics:
            raise UntrustedSource("TopicArn is not one this endpoint accepts")
        algorithm = _HASHES.get(optional_field(message, "SignatureVersion") or "")
        if algorithm is None:
            raise BadSignature("SignatureVersion is not 1 or 2")
        try:
            signature = base64.b64decode(field(message, "Signature"), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise BadSignature("Signature is not base64") from exc
        kind = field(message, "Type")
        subscribe_url = optional_field(message, "SubscribeURL") if kind != NOTIFICATION else None
        if subscribe_url is not None:
            check_sns_url(subscribe_url, "SubscribeURL")
        certificate = await self.certificate(field(message, "SigningCertURL"))
        now = datetime.fromtimestamp(self._now(), tz=UTC)
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            raise UntrustedSource("the signing certificate is not valid now")
        key = certificate.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise UntrustedSource("the signing certificate's key is not RSA")
        try:
            key.verify(signature, signed, padding.PKCS1v15(), algorithm())
        except InvalidSignature as exc:
            raise BadSignature("Signature does not match the message") from exc
        return SnsMessage(
            type=kind,
            message_id=field(message, "MessageId"),
            topic_arn=topic,
            message=optional_field(message, "Message") or "",
            timestamp=iso_time(field(message, "Timestamp"), "Timestamp"),
            subject=optional_field(message, "Subject"),
            subscribe_url=subscribe_url,
        )

    async def confirm(self, message: SnsMessage) -> None:
        """Visit a verified SubscriptionConfirmation's SubscribeURL, as AWS asks.

        Through the same session as the certificates: https to an SNS host
        only (``subscribe_url_to_visit``), TLS verified, no redirects, the
        answer read up to a bound. UntrustedSource if it cannot be visited.
        """
        url = subscribe_url_to_visit(message)
        try:
            async with self._client().get(url, allow_redirects=False) as reply:
                await reply.content.read(MAX_CERT_BYTES)
                if reply.status != 200:
                    raise UntrustedSource(f"SubscribeURL answered {reply.status}")
        except (aiohttp.ClientError, TimeoutError, ssl.SSLError, OSError) as exc:
            raise UntrustedSource("the SubscribeURL could not be visited") from exc


def subscribe_url_to_visit(message: SnsMessage) -> str:
    """The URL to GET to confirm a verified SubscriptionConfirmation."""
    if message.type != SUBSCRIPTION_CONFIRMATION or message.subscribe_url is None:
        raise MalformedReceipt("not a SubscriptionConfirmation")
    return check_sns_url(message.subscribe_url, "SubscribeURL")
