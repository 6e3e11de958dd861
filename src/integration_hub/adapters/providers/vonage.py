"""SMS through the Vonage SMS API (``POST /sms/json``, formerly Nexmo).

Vonage answers HTTP 200 for most errors: each message part carries a
``status`` ("0" is success) and an ``error-text``. The statuses are the ones
Vonage documents for the SMS API (developer.vonage.com, "SMS API error codes");
one we do not know, like an HTTP answer that is not one of Vonage's bodies, is
classified by its HTTP status, and an unclear HTTP 200 is transient.

Authentication is the API key with the API secret, or the API key with a
signature (``sig``) of the request made with the account's signature secret,
per Vonage's "Signing Messages": the parameters sorted by name, each as
``&name=value`` with ``&`` and ``=`` in values replaced by ``_``, then the MD5
of that string followed by the secret (``md5hash``, Vonage's default), or the
HMAC of the string keyed by the secret (``md5``, ``sha1``, ``sha256``,
``sha512``). A signed request never carries the API secret (status 32).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Literal, Self
from urllib.parse import quote_plus, urlencode

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from integration_hub.adapters.providers.http import (
    FORM,
    JSON,
    ErrorCodes,
    HttpOptions,
    HttpProvider,
    HttpReply,
    classify_error,
    form_body,
    int_code,
    redact,
    tenant_text,
)
from integration_hub.domain.delivery import (
    Delivered,
    DeliveryResult,
    OutboundMessage,
    PermanentFailure,
    ProviderCheck,
    TransientFailure,
)
from integration_hub.domain.outbound import OutboundPolicy

DEFAULT_BASE_URL = "https://rest.nexmo.com"
SignatureMethod = Literal["md5hash", "md5", "sha1", "sha256", "sha512"]
# Vonage's limit on the ``callback`` parameter.
MAX_CALLBACK_CHARS = 100

# Retrying later can work: Vonage is busy or had an internal error.
_TRANSIENT: Mapping[int, str] = {
    1: "rate_limited",  # Throttled: faster than the account's limit
    5: "provider_error",  # Internal Error
    10: "too_many_binds",  # Too Many Existing Binds: back off and retry
}

# The account, its credentials or our request are wrong: every message fails
# until an operator acts.
_CONFIGURATION: Mapping[int, str] = {
    2: "missing_parameters",  # we always send from, to and text: our settings
    3: "invalid_parameters",  # unless about 'to': see _recipient_named
    4: "authentication",  # Invalid Credentials
    8: "account_barred",  # Partner Account Barred: the account is suspended
    9: "insufficient_balance",  # Partner Quota Violation: top up and retry
    11: "http_not_enabled",  # Account Not Enabled For HTTP
    14: "invalid_signature",
    15: "invalid_sender",  # Invalid Sender Address
    23: "invalid_callback",  # Invalid Callback Url
    29: "destination_not_whitelisted",  # Non-Whitelisted Destination: demo account
    32: "signature_and_secret",  # Signature And API Secret Disallowed
}

# This message or this recipient cannot work: retrying changes nothing.
_PERMANENT: Mapping[int, str] = {
    6: "invalid_message",  # e.g. an unrecognised number prefix
    7: "number_barred",  # the recipient is blocked from receiving
    12: "message_too_long",
    22: "invalid_network_code",
    33: "number_deactivated",
}

ERROR_CODES = ErrorCodes(transient=_TRANSIENT, configuration=_CONFIGURATION, permanent=_PERMANENT)

# Status 3 (Invalid Parameters) covers any parameter. When its error-text names
# the 'to' parameter ("Invalid to address", "Invalid value for parameter: to")
# the recipient's number is at fault: permanent for this message, not the
# account's configuration.
_RECIPIENT_NAMED = re.compile(
    r"(?<![\w-])['\"]?to['\"]?\s+(?:param|parameter|number|address|field|value)\b"
    r"|\b(?:param|parameter)\b\W{0,3}['\"]?to\b(?!-)"
    r"|\binvalid\s+['\"]?to\b(?!-)",
    re.IGNORECASE,
)
_INVALID_PARAMETERS = 3

# GSM 03.38: the default alphabet and its extension table (each extension
# character takes two septets). Anything else needs ``type=unicode``.
GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = frozenset("\f^{}\\[~]|€")
_NUMERIC_SENDER = re.compile(r"^\+?[0-9]{4,15}$")
_ALPHANUMERIC_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")


def is_gsm(text: str) -> bool:
    """Whether ``text`` can be sent in the GSM 7-bit alphabet (Vonage's ``type=text``)."""
    return all(c in GSM_BASIC or c in GSM_EXTENSION for c in text)


class VonageSettings(BaseModel):
    """One Vonage account (API key) and the sender it sends from.

    Authenticate with ``api_secret``, or sign every request with
    ``signature_secret`` and ``signature_method`` (as chosen in the Vonage
    dashboard). With both, sends are signed and ``check`` uses the secret.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    api_key: str = Field(min_length=1, max_length=64)
    api_secret: SecretStr | None = None
    signature_secret: SecretStr | None = None
    signature_method: SignatureMethod = "md5hash"
    # A number (E.164, the '+' optional) or an alphanumeric sender ID.
    sender: str
    base_url: str = DEFAULT_BASE_URL
    # Where Vonage posts delivery receipts for these messages (overrides the
    # dashboard's webhook); passed through the outbound rule like base_url.
    callback: str | None = Field(default=None, max_length=MAX_CALLBACK_CHARS)

    @field_validator("sender")
    @classmethod
    def _sender(cls, value: str) -> str:
        if not (_NUMERIC_SENDER.match(value) or _ALPHANUMERIC_SENDER.match(value)):
            raise ValueError(
                "a number of 4 to 15 digits ('+' optional) or an alphanumeric"
                " sender ID of 1 to 11 letters, digits and spaces"
            )
        return value

    @model_validator(mode="after")
    def _credentials(self) -> Self:
        if self.api_secret is None and self.signature_secret is None:
            raise ValueError("set api_secret or signature_secret (or both)")
        return self

    def secrets(self) -> tuple[str, ...]:
        """Values that must never leave the adapter, as given and as URL-encoded."""
        found = [s.get_secret_value() for s in (self.api_secret, self.signature_secret) if s]
        return tuple(dict.fromkeys([*found, *(quote_plus(s) for s in found)]))


def signature(params: Mapping[str, str], secret: str, method: SignatureMethod) -> str:
    """``sig`` for ``params`` per Vonage's "Signing Messages" (lowercase hex)."""
    signed = "".join(
        f"&{key}={params[key].replace('&', '_').replace('=', '_')}"
        for key in sorted(params)
        if key != "sig"
    )
    if method == "md5hash":
        # Vonage's default scheme, not a choice of ours; without the flag a
        # FIPS-mode Python refuses MD5 altogether.
        return hashlib.md5((signed + secret).encode(), usedforsecurity=False).hexdigest()
    return hmac.new(secret.encode(), signed.encode(), method).hexdigest()


class VonageProvider(HttpProvider):
    """SMS via ``POST {base_url}/sms/json`` (form-encoded)."""

    name: str = "vonage"

    def __init__(
        self,
        settings: VonageSettings,
        *,
        options: HttpOptions | None = None,
        session: aiohttp.ClientSession | None = None,
        outbound: OutboundPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(options=options, session=session, outbound=outbound)
        self.settings = settings
        self._clock = clock  # the signature's timestamp
        self._check_base_url(settings.base_url)
        base = settings.base_url.rstrip("/")
        self._url = f"{base}/sms/json"
        self._balance_url = f"{base}/account/get-balance"
        # Built once: an instance's settings never change (the registry builds
        # a new instance when a tenant's settings do).
        self._headers = {"Accept": JSON, "Content-Type": FORM}
        self._sender = settings.sender.removeprefix("+")

    def __repr__(self) -> str:
        return f"VonageProvider(api_key={self.settings.api_key!r})"

    def _secrets(self) -> tuple[str, ...]:
        return self.settings.secrets()

    def form(self, message: OutboundMessage) -> dict[str, str]:
        """The form fields Vonage expects for ``message``, authenticated."""
        fields = {
            "api_key": self.settings.api_key,
            "from": self._sender,
            # Vonage takes the E.164 digits without the leading '+'.
            "to": (message.recipient.phone or "").removeprefix("+"),
            "text": message.body,
            # Comes back in delivery receipts, so a receipt finds the notification.
            "client-ref": message.notification_id,
        }
        if not is_gsm(message.body):
            fields["type"] = "unicode"
        if self.settings.callback:
            fields["callback"] = self.settings.callback
        return self._authenticate(fields)

    def _authenticate(self, fields: dict[str, str]) -> dict[str, str]:
        settings = self.settings
        if settings.signature_secret is not None:
            fields["timestamp"] = str(int(self._clock()))
            fields["sig"] = signature(
                fields, settings.signature_secret.get_secret_value(), settings.signature_method
            )
        else:
            assert settings.api_secret is not None  # guaranteed by the validator
            fields["api_secret"] = settings.api_secret.get_secret_value()
        return fields

    async def send(self, message: OutboundMessage) -> DeliveryResult:
        """Submit one SMS (Vonage may split it into parts); classify the answer."""
        if not message.recipient.phone:
            return PermanentFailure("invalid_recipient", "vonage: the recipient has no phone")
        reply = await self._request(
            "POST", self._url, headers=self._headers, body=form_body(self.form(message))
        )
        if not isinstance(reply, HttpReply):
            return reply
        return classify(reply, self._secrets())

    async def check(self) -> ProviderCheck:
        """Read the account balance: proves the API key and secret, sends nothing."""
        settings = self.settings
        if settings.api_secret is None:
            # The Account API takes the key and secret only: a signature secret
            # can be proved only by sending a message, which a check must not.
            return ProviderCheck(
                False,
                "configuration: vonage: check needs api_secret (the balance request"
                " cannot be signed); signature_secret is not verified",
            )
        query = urlencode(
            {"api_key": settings.api_key, "api_secret": settings.api_secret.get_secret_value()}
        )
        reply = await self._request("GET", f"{self._balance_url}?{query}", headers={"Accept": JSON})
        if not isinstance(reply, HttpReply):
            return ProviderCheck.failed(reply)
        body = reply.json_object()
        value = body.get("value") if body else None
        if reply.status == 200 and isinstance(value, int | float) and not isinstance(value, bool):
            reload = "on" if body and body.get("autoReload") else "off"
            detail = f"api key {settings.api_key}: balance {value:.2f} EUR, auto-reload {reload}"
            return ProviderCheck(True, redact(detail, self._secrets()))
        if reply.status == 200:
            # Whatever answered is not Vonage's balance resource: unproven.
            return ProviderCheck.failed(
                TransientFailure("unexpected_response", "vonage: HTTP 200 without a balance")
            )
        return ProviderCheck.failed(classify(reply, self._secrets()))


def classify(reply: HttpReply, secrets: tuple[str, ...] = ()) -> DeliveryResult:
    """Translate a Vonage answer into a delivery result."""
    body = reply.json_object()
    parts = _parts(body) if reply.status == 200 else None
    if parts is None:
        code, text = _error_fields(body)
        return classify_error(
            "vonage", reply, code=code, text=text, codes=ERROR_CODES, secrets=secrets
        )
    failed = next((p for p in parts if _status(p) != 0), None)
    if failed is None:
        message_id = parts[0].get("message-id")
        if isinstance(message_id, str) and message_id:
            # A long text is sent as several parts, each with its own id (and
            # receipt); the first one names the message.
            return Delivered(message_id)
        return TransientFailure("unexpected_response", "vonage: status 0 without a message-id")
    # One failed part fails the message; the parts already accepted are sent,
    # and a retry sends them again: a duplicate beats a silent loss.
    return _failed_part(reply, failed, secrets)


def _failed_part(
    reply: HttpReply, part: Mapping[str, Any], secrets: tuple[str, ...]
) -> DeliveryResult:
    code = _status(part)
    raw_text = part.get("error-text")
    text = raw_text if isinstance(raw_text, str) else ""
    shown = tenant_text(text, secrets)
    message = f"vonage status {code}: {shown}" if shown else f"vonage status {code}"
    raw = redact(reply.snippet(), secrets) or "(empty body)"
    result = ERROR_CODES.classify(code, message)
    if not isinstance(result, TransientFailure | PermanentFailure):
        # A status Vonage does not document (or no status at all) in an HTTP
        # 200: unclear whether anything was sent, so retried.
        code_text = str(code) if code is not None else None
        return TransientFailure("unknown_status", message, code=code_text, provider_response=raw)
    if code == _INVALID_PARAMETERS and _RECIPIENT_NAMED.search(text):
        result = PermanentFailure("invalid_to", message, code=str(code))
    return replace(result, provider_response=raw)


def _parts(body: dict[str, Any] | None) -> list[Mapping[str, Any]] | None:
    """The ``messages`` of an SMS API answer, or None if the body is not one."""
    messages = body.get("messages") if body else None
    if not isinstance(messages, list) or not messages:
        return None
    if not all(isinstance(m, dict) for m in messages):
        return None
    return messages


def _status(part: Mapping[str, Any]) -> int | None:
    return int_code(part.get("status"))


def _error_fields(body: dict[str, Any] | None) -> tuple[int | None, str | None]:
    """A status and text from a non-200 answer, if it carries one of Vonage's bodies."""
    if body is None:
        return None, None
    parts = _parts(body)
    if parts:
        text = parts[0].get("error-text")
        return _status(parts[0]), text if isinstance(text, str) else None
    # The Account API's errors: {"error-code": "401", "error-code-label": "..."}
    # or RFC 7807 problem details; their codes are HTTP statuses, not SMS ones.
    for key in ("error-code-label", "title", "detail"):
        text = body.get(key)
        if isinstance(text, str) and text:
            return None, text
    return None, None
