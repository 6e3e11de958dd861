"""A local Vonage SMS API: ``POST /sms/json`` and ``GET /account/get-balance``.

It checks what Vonage checks (the API key with the API secret, or a request
signature made with the signature secret and a timestamp within five minutes,
never both; from, to and text; 'to' as 7 to 15 digits; owned numeric senders;
the callback URL; a demo account's whitelist) and answers with Vonage's
documented bodies: HTTP 200 with ``{"message-count", "messages": [...]}``, one
entry per SMS part, ``status`` "0" or an error status with ``error-text``.
Typical use::

    async with FakeVonage() as vonage:
        settings = VonageSettings.model_validate(vonage.credentials())
        vonage.queue_status(7, "Number barred.")     # next send: barred
        vonage.messages                              # accepted messages

The signature check is written from Vonage's "Signing Messages" text, apart
from the adapter's, so a mistake in one is not repeated by the other.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from .fake_http import FakeHttpServer, ReceivedRequest, json_response

TO = re.compile(r"^[0-9]{7,15}$")
NUMERIC = re.compile(r"^[0-9]+$")
# How far a signed request's timestamp may be from the fake's clock.
SIGNATURE_SKEW = 300
# The fake's own cap on the parts of one text (Vonage answers status 12 past its cap).
MAX_PARTS = 6
MAX_CLIENT_REF = 100
MAX_CALLBACK = 100
GSM = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_DOUBLE = set("\f^{}\\[~]|€")


def sms_error(status: int, text: str) -> dict[str, Any]:
    """Vonage's documented body for a rejected message (HTTP 200)."""
    return {"message-count": "1", "messages": [{"status": str(status), "error-text": text}]}


def parts_of(text: str, kind: str) -> int:
    """How many SMS parts ``text`` takes as ``kind`` ("text" or "unicode")."""
    if kind == "unicode":
        units = len(text.encode("utf-16-le")) // 2
        single, part = 70, 67
    else:
        units = sum(2 if c in GSM_DOUBLE else 1 for c in text)
        single, part = 160, 153
    return 1 if units <= single else -(-units // part)


def vonage_sig(params: dict[str, str], secret: str, method: str) -> str:
    """The ``sig`` Vonage expects, per "Signing Messages"."""
    pieces = []
    for name in sorted(k for k in params if k != "sig"):
        value = params[name]
        for special in "&=":
            value = value.replace(special, "_")
        pieces.append("&" + name + "=" + value)
    text = "".join(pieces)
    if method == "md5hash":
        return hashlib.md5(text.encode("utf-8") + secret.encode("utf-8")).hexdigest()  # noqa: S324 - Vonage's scheme
    digest = {"md5": hashlib.md5, "sha1": hashlib.sha1, "sha256": hashlib.sha256}.get(
        method, hashlib.sha512
    )
    return hmac.new(secret.encode("utf-8"), text.encode("utf-8"), digest).hexdigest()


class FakeVonage(FakeHttpServer):
    """Vonage's SMS API and balance resource, validated like the real ones."""

    def __init__(
        self,
        *,
        api_key: str = "abcd1234",
        api_secret: str = "fakeVonageSecret1",  # noqa: S107 - a fake credential, on purpose
        signature_secret: str = "fake-vonage-signature-secret-0123",  # noqa: S107 - fake
        signature_method: str = "md5hash",
        numbers: set[str] | None = None,
        whitelist: set[str] | None = None,
        balance: float = 15.5359,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port)
        self.api_key = api_key
        self.api_secret = api_secret
        self.signature_secret = signature_secret
        self.signature_method = signature_method
        self.numbers = set(numbers or {"447700900000"})
        # A demo (trial) account sends only to its whitelisted numbers.
        self.whitelist = whitelist
        self.balance = balance
        self.clock = time.time
        self.messages: list[dict[str, Any]] = []

    @property
    def sender(self) -> str:
        """A number this account owns."""
        return sorted(self.numbers)[0]

    def credentials(self, **overrides: Any) -> dict[str, Any]:
        """The hub's ``vonage`` provider settings that send to this fake."""
        return {
            "api_key": self.api_key,
            "api_secret": self.api_secret,
            "sender": self.sender,
            "base_url": self.base_url,
            **overrides,
        }

    def queue_status(self, status: int, text: str, *, accepted_parts: int = 0) -> None:
        """Answer the next valid send with this status, after ``accepted_parts`` good parts."""
        good = [self._part("447700900001") for _ in range(accepted_parts)]
        bad = {"status": str(status), "error-text": text}
        body = {"message-count": str(accepted_parts + 1), "messages": [*good, bad]}
        self.queue_response(200, body)

    async def handle(self, request: ReceivedRequest) -> web.StreamResponse:
        """Validate like Vonage, then answer (scripted or accepted)."""
        if request.path == "/account/get-balance" and request.method == "GET":
            refused = self._unauthorised(request)
            return refused if refused is not None else await self.answer(request)
        if request.path != "/sms/json" or request.method != "POST":
            return web.Response(status=404, text="Not Found")
        params = request.form or (request.json if isinstance(request.json, dict) else {})
        params = {k: str(v) for k, v in params.items()}
        problem = self._unauthenticated(params) or self._invalid(params)
        if problem is not None:
            return json_response(200, sms_error(*problem))
        return await self.answer(request)

    def _unauthorised(self, request: ReceivedRequest) -> web.Response | None:
        """The balance request's credentials (query api_key and api_secret), if wrong."""
        key, secret = request.query.get("api_key"), request.query.get("api_secret", "")
        if key != self.api_key or not secrets.compare_digest(secret, self.api_secret):
            return json_response(
                401, {"error-code": "401", "error-code-label": "authentication failed"}
            )
        return None

    def accept(self, request: ReceivedRequest) -> web.StreamResponse:
        """The balance; or record the message and answer with one entry per part."""
        if request.method == "GET":
            return json_response(200, {"value": self.balance, "autoReload": False})
        params = request.form or request.json
        kind = params.get("type", "text")
        parts = [self._part(params["to"]) for _ in range(parts_of(params["text"], kind))]
        self.messages.append(
            {
                "to": params["to"],
                "from": params["from"],
                "text": params["text"],
                "type": kind,
                "client-ref": params.get("client-ref"),
                "callback": params.get("callback"),
                "message-ids": [p["message-id"] for p in parts],
            }
        )
        return json_response(200, {"message-count": str(len(parts)), "messages": parts})

    def _part(self, to: str) -> dict[str, str]:
        self.balance -= 0.0333
        return {
            "to": to,
            "message-id": str(uuid.uuid4()),
            "status": "0",
            "remaining-balance": f"{self.balance:.8f}",
            "message-price": "0.03330000",
            "network": "23410",
        }

    def _unauthenticated(self, params: dict[str, str]) -> tuple[int, str] | None:
        if not params.get("api_key"):
            return 2, "Missing api_key"
        if "sig" in params and "api_secret" in params:
            return 32, "Signature and API secret disallowed"
        if "sig" in params:
            return self._bad_signature(params)
        if "api_secret" not in params:
            return 2, "Missing api_secret"
        if params["api_key"] != self.api_key or not secrets.compare_digest(
            params["api_secret"], self.api_secret
        ):
            return 4, "Bad Credentials"
        return None

    def _bad_signature(self, params: dict[str, str]) -> tuple[int, str] | None:
        if params["api_key"] != self.api_key:
            return 4, "Bad Credentials"
        stamp = params.get("timestamp", "")
        if not NUMERIC.match(stamp) or abs(int(stamp) - self.clock()) > SIGNATURE_SKEW:
            return 14, "Invalid Signature"
        expected = vonage_sig(params, self.signature_secret, self.signature_method)
        if not hmac.compare_digest(params["sig"].lower(), expected):
            return 14, "Invalid Signature"
        return None

    def _invalid(self, params: dict[str, str]) -> tuple[int, str] | None:
        for name in ("from", "to", "text"):
            if not params.get(name):
                return 2, f"Missing {name} param"
        to, sender = params["to"], params["from"]
        if not TO.match(to):
            return 3, "Invalid to address"
        if params.get("type", "text") not in ("text", "unicode"):
            return 3, "Invalid type param"
        if NUMERIC.match(sender) and sender not in self.numbers:
            return 15, "Illegal Sender Address - rejected"
        callback = params.get("callback")
        if callback is not None and not _is_callback(callback):
            return 23, "Invalid Callback Url"
        if len(params.get("client-ref", "")) > MAX_CLIENT_REF:
            return 3, "Invalid client-ref param"
        if self.whitelist is not None and to not in self.whitelist:
            return 29, "Non White-listed Destination - rejected"
        if parts_of(params["text"], params.get("type", "text")) > MAX_PARTS:
            return 12, "Message too long"
        return None


def _is_callback(url: str) -> bool:
    parts = urlsplit(url)
    return len(url) <= MAX_CALLBACK and parts.scheme in ("http", "https") and bool(parts.netloc)
