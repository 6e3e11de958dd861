"""SMS through Twilio Programmable Messaging (REST API 2010-04-01).

Error codes are Twilio's documented ones (https://www.twilio.com/docs/api/errors);
a code we do not know is classified by its HTTP status.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, Generic, Self, TypeVar
from urllib.parse import quote

import aiohttp
from pydantic import BaseModel, ConfigDict, SecretStr, model_validator

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

DEFAULT_BASE_URL = "https://api.twilio.com"

# The recipient cannot get this message: retrying changes nothing.
_PERMANENT: Mapping[int, str] = {
    21211: "invalid_to",  # 'To' is not a valid phone number
    21604: "missing_to",
    21602: "missing_body",
    21608: "unverified_to",  # trial account: 'To' is not a verified caller id
    21610: "unsubscribed",  # the recipient replied STOP
    21612: "unroutable",  # no route for this To/From pair
    21614: "not_mobile",  # 'To' is not a mobile number
    21617: "body_too_long",
    21635: "landline",
    30003: "unreachable_handset",
    30004: "message_blocked",
    30005: "unknown_handset",
    30006: "landline_or_unreachable_carrier",
    30007: "carrier_filtered",
}

# The account or sender is misconfigured: every message fails until an operator acts.
_CONFIGURATION: Mapping[int, str] = {
    20003: "authentication",
    20005: "account_not_active",
    20404: "account_not_found",
    21212: "invalid_from",
    21601: "from_not_sms_capable",
    21603: "missing_from",
    21606: "from_not_owned",
    21659: "from_not_twilio_number",
    # Twilio documents 21408 as "permission to send an SMS has not been enabled
    # for the region": the fix is the account's Geo Permissions, so it is an
    # operator problem, not the recipient's.
    21408: "region_not_enabled",
    21705: "invalid_messaging_service",
}

_TRANSIENT: Mapping[int, str] = {
    20429: "rate_limited",  # "always safe to retry" per Twilio
    20500: "provider_error",
    20503: "provider_unavailable",
    30001: "queue_overflow",
}

ERROR_CODES = ErrorCodes(transient=_TRANSIENT, configuration=_CONFIGURATION, permanent=_PERMANENT)


class TwilioAccount(BaseModel):
    """Credentials of one Twilio account, shared by every Twilio provider's settings.

    Authenticate with the account's auth token, or with an API key
    (``api_key_sid`` + ``api_key_secret``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    account_sid: str
    auth_token: SecretStr | None = None
    api_key_sid: str | None = None
    api_key_secret: SecretStr | None = None
    base_url: str = DEFAULT_BASE_URL
    status_callback: str | None = None

    @model_validator(mode="after")
    def _credentials(self) -> Self:
        if (self.api_key_sid is None) != (self.api_key_secret is None):
            raise ValueError("api_key_sid and api_key_secret go together")
        if self.auth_token is None and self.api_key_sid is None:
            raise ValueError("set auth_token, or api_key_sid and api_key_secret")
        return self

    def authorization(self) -> str:
        """HTTP basic credentials: the API key if given, else the account and its token."""
        # Encoded here rather than with aiohttp.BasicAuth, deprecated in aiohttp 3.14.
        if self.api_key_sid and self.api_key_secret:
            user, password = self.api_key_sid, self.api_key_secret.get_secret_value()
        else:
            assert self.auth_token is not None  # guaranteed by the validator
            user, password = self.account_sid, self.auth_token.get_secret_value()
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")

    def secrets(self) -> tuple[str, ...]:
        """Values that must never leave the adapter."""
        found = (self.auth_token, self.api_key_secret)
        return tuple(s.get_secret_value() for s in found if s is not None)


class TwilioSettings(TwilioAccount):
    """Credentials and sender for one Twilio account's SMS.

    Send from ``from_number`` or a ``messaging_service_sid`` (or both).
    """

    from_number: str | None = None
    messaging_service_sid: str | None = None

    @model_validator(mode="after")
    def _sender(self) -> Self:
        if not self.from_number and not self.messaging_service_sid:
            raise ValueError("set from_number or messaging_service_sid")
        return self


Account = TypeVar("Account", bound=TwilioAccount)


class TwilioMessages(HttpProvider, Generic[Account]):
    """What every Twilio Programmable Messaging adapter shares.

    ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` with HTTP basic
    auth, the Account resource as the credential check, and Twilio's error
    body classified with ``codes``. A subclass says which form fields a
    message becomes (``form``) and may refuse one before sending (``refuse``).
    """

    name: str = "twilio"
    codes: ErrorCodes = ERROR_CODES

    def __init__(
        self,
        settings: Account,
        *,
        options: HttpOptions | None = None,
        session: aiohttp.ClientSession | None = None,
        outbound: OutboundPolicy | None = None,
        status_callback: str | None = None,
    ) -> None:
        super().__init__(options=options, session=session, outbound=outbound)
        self.settings = settings
        # Where Twilio posts status callbacks: the hub's receipt endpoint for
        # this tenant when given (the registry builds it from the public URL),
        # else the tenant's own setting, else nowhere.
        self.status_callback = status_callback or settings.status_callback
        self._check_base_url(settings.base_url)
        base = settings.base_url.rstrip("/")
        account = quote(settings.account_sid, safe="")
        self._url = f"{base}/2010-04-01/Accounts/{account}/Messages.json"
        self._account_url = f"{base}/2010-04-01/Accounts/{account}.json"
        # Built once: the settings of an instance never change (the registry
        # builds a new instance when a tenant's settings do).
        self._send_headers = {
            "Accept": JSON,
            "Authorization": settings.authorization(),
            "Content-Type": FORM,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(account_sid={self.settings.account_sid!r})"

    def _secrets(self) -> tuple[str, ...]:
        # The encoded header too, in case an error page echoes the request.
        encoded = self.settings.authorization().removeprefix("Basic ")
        return (*self.settings.secrets(), encoded)

    def form(self, message: OutboundMessage) -> dict[str, str]:
        """The form fields Twilio expects for ``message``."""
        raise NotImplementedError

    def refuse(self, message: OutboundMessage) -> DeliveryResult | None:
        """Why ``message`` cannot be sent at all (nothing is sent then), or None."""
        if not message.recipient.phone:
            return PermanentFailure("invalid_recipient", f"{self.name}: the recipient has no phone")
        return None

    async def send(self, message: OutboundMessage) -> DeliveryResult:
        """Create one Message resource; classify whatever Twilio answers."""
        refused = self.refuse(message)
        if refused is not None:
            return refused
        reply = await self._request(
            "POST", self._url, headers=self._send_headers, body=form_body(self.form(message))
        )
        if not isinstance(reply, HttpReply):
            return reply
        return classify_reply(self.name, self.codes, reply, self._secrets())

    async def check(self) -> ProviderCheck:
        """Fetch the Account resource: proves the credentials and the account SID."""
        headers = {"Accept": "application/json", "Authorization": self.settings.authorization()}
        secrets = self._secrets()
        name, codes = self.name, self.codes
        return await self._probe(
            self._account_url,
            headers,
            _describe_account,
            lambda r: classify_reply(name, codes, r, secrets),
        )


class TwilioProvider(TwilioMessages[TwilioSettings]):
    """SMS via ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``."""

    name: str = "twilio"

    def form(self, message: OutboundMessage) -> dict[str, str]:
        """The form fields Twilio expects for ``message``."""
        settings = self.settings
        fields = {"To": message.recipient.phone or "", "Body": message.body}
        if settings.messaging_service_sid:
            fields["MessagingServiceSid"] = settings.messaging_service_sid
        if settings.from_number:
            fields["From"] = settings.from_number
        if self.status_callback:
            fields["StatusCallback"] = self.status_callback
        return fields


def _describe_account(reply: HttpReply) -> str:
    body = reply.json_object() or {}
    return f"account {body.get('sid', '?')} status {body.get('status', 'unknown')}"


def classify(reply: HttpReply, secrets: tuple[str, ...] = ()) -> DeliveryResult:
    """Translate a Twilio SMS answer into a delivery result."""
    return classify_reply("twilio", ERROR_CODES, reply, secrets)


def classify_reply(
    provider: str, codes: ErrorCodes, reply: HttpReply, secrets: tuple[str, ...] = ()
) -> DeliveryResult:
    """Translate a Twilio answer into a delivery result, with ``provider``'s ``codes``."""
    body = reply.json_object()
    if reply.status in (200, 201):
        sid = body.get("sid") if body else None
        if isinstance(sid, str) and sid:
            return Delivered(sid)
        # Twilio may have queued the message; we prefer a possible duplicate to
        # a silent loss, so this is retried like any other unclear answer.
        return TransientFailure(
            "unexpected_response", f"{provider}: HTTP {reply.status} without a message sid"
        )
    code, text = _error_fields(body)
    return classify_error(provider, reply, code=code, text=text, codes=codes, secrets=secrets)


def _error_fields(body: dict[str, Any] | None) -> tuple[int | None, str | None]:
    """Twilio's ``code`` and ``message``, if the body carries them."""
    if body is None:
        return None, None
    text = body.get("message")
    return int_code(body.get("code")), text if isinstance(text, str) else None
