"""A local Twilio Programmable Messaging API: ``POST /2010-04-01/Accounts/{Sid}/Messages.json``.

It checks what Twilio checks (HTTP basic auth with the auth token or an API
key, the account in the path, form fields, E.164 numbers, owned senders) and
answers with Twilio's documented bodies. Typical use::

    async with FakeTwilio() as twilio:
        settings = TwilioSettings(
            account_sid=twilio.account_sid,
            auth_token=twilio.auth_token,
            from_number=twilio.from_number,
            base_url=twilio.base_url,
        )
        twilio.queue_error(21610)                       # next send: unsubscribed
        twilio.queue_response(429, {...}, headers={"Retry-After": "3"})
        twilio.messages                                 # accepted messages

A message sent with ``StatusCallback`` gets status callbacks as Twilio sends
them (form fields, ``X-Twilio-Signature`` computed by the ``twilio``
package's own RequestValidator), scripted with ``fake_callbacks.Step``::

    twilio.script(Step("sent"), Step("undelivered", error_code="21610"))
    twilio.hold = True                      # ... then: await twilio.flush()
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from email.utils import formatdate
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from .fake_callbacks import Pending, Reporter, Step
from .fake_http import FakeHttpServer, ReceivedRequest, json_response

PATH = re.compile(r"^/2010-04-01/Accounts/(?P<sid>[^/]+)/Messages\.json$")
ACCOUNT_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<sid>[^/]+)\.json$")
# Stricter than the hub's own check: a real numbering plan needs more digits.
E164 = re.compile(r"^\+[1-9][0-9]{7,14}$")
ALPHANUMERIC_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")
MAX_BODY = 1600


def twilio_error(status: int, code: int, message: str) -> dict[str, Any]:
    """Twilio's documented error body."""
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


class FakeTwilio(FakeHttpServer, Reporter):
    """Twilio's Messages resource, validated like the real one, with status callbacks."""

    def __init__(
        self,
        *,
        account_sid: str = "AC" + "1" * 32,
        auth_token: str = "fake-twilio-auth-token-0123456789",  # noqa: S107 - a fake credential, on purpose
        api_keys: dict[str, str] | None = None,
        numbers: set[str] | None = None,
        messaging_services: set[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        FakeHttpServer.__init__(self, host=host, port=port)
        Reporter.__init__(self)
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.api_keys = dict(api_keys or {"SK" + "2" * 32: "fake-twilio-api-key-secret"})
        self.numbers = set(numbers or {"+15005550006"})
        self.messaging_services = set(messaging_services or {"MG" + "3" * 32})
        self.messages: list[dict[str, Any]] = []

    async def stop(self) -> None:
        """Stop sending callbacks, then stop listening."""
        await self.close_reporter()
        await super().stop()

    @property
    def from_number(self) -> str:
        """A sender number this account owns."""
        return sorted(self.numbers)[0]

    def queue_error(
        self,
        code: int,
        *,
        status: int = 400,
        message: str | None = None,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
    ) -> None:
        """Answer the next valid request with a Twilio error body."""
        text = message or f"Twilio error {code}"
        self.queue_response(status, twilio_error(status, code, text), headers=headers, delay=delay)

    async def handle(self, request: ReceivedRequest) -> web.StreamResponse:
        """Validate like Twilio, then answer (scripted or accepted)."""
        account = ACCOUNT_PATH.match(request.path)
        if account is not None and request.method == "GET":
            return self.account(request, account["sid"])
        match = PATH.match(request.path)
        if match is None or request.method != "POST":
            return _error(404, 20404, f"The requested resource {request.path} was not found")
        if not self._authenticated(request):
            return _error(401, 20003, "Authenticate")
        if match["sid"] != self.account_sid:
            return _error(404, 20404, f"The requested resource {request.path} was not found")
        problem = self._invalid(request.form)
        if problem is not None:
            return problem
        return await self.answer(request)

    def account(self, request: ReceivedRequest, sid: str) -> web.StreamResponse:
        """GET /Accounts/{sid}.json: the Account resource, for credential checks."""
        if not self._authenticated(request):
            return _error(401, 20003, "Authenticate")
        if sid != self.account_sid:
            return _error(404, 20404, f"The requested resource {request.path} was not found")
        return json_response(
            200, {"sid": sid, "friendly_name": "Fake account", "status": "active", "type": "Full"}
        )

    def credentials(self, **overrides: Any) -> dict[str, Any]:
        """The hub's ``twilio`` provider settings that send to this fake."""
        return {
            "account_sid": self.account_sid,
            "auth_token": self.auth_token,
            "from_number": self.from_number,
            "base_url": self.base_url,
            **overrides,
        }

    def accept(self, request: ReceivedRequest) -> web.StreamResponse:
        """Queue the message and answer 201 with the Message resource."""
        form = request.form
        body = form.get("Body", "")  # none for a Content template (WhatsApp)
        sid = "SM" + secrets.token_hex(16)
        now = formatdate(usegmt=True)
        resource = {
            "sid": sid,
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": body,
            "date_created": now,
            "date_updated": now,
            "date_sent": None,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"),
            "num_media": "0",
            "num_segments": str(max(1, -(-len(body) // 160))),
            "price": None,
            "price_unit": "USD",
            "status": "accepted" if "MessagingServiceSid" in form else "queued",
            "to": form["To"],
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
        }
        self.messages.append(resource)
        callback = form.get("StatusCallback")
        if callback:
            sender = form.get("From") or form.get("MessagingServiceSid") or ""
            extra = {"From": sender}
            self.report(
                [Pending(sid, form["To"], step, callback, extra) for step in self.steps_for(form)]
            )
        return json_response(201, resource)

    def steps_for(self, form: dict[str, str]) -> list[Step]:
        """The status callbacks an accepted message gets: the scripted ones."""
        return self.next_steps()

    def callback_params(self, item: Pending) -> dict[str, str]:
        """The form fields of Twilio's status callback for ``item``."""
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "From": item.extra.get("From", ""),
            "MessageSid": item.message_id,
            "MessageStatus": item.step.status,
            "SmsSid": item.message_id,
            "SmsStatus": item.step.status,
            "To": item.recipient,
        }
        if item.step.error_code is not None:
            params["ErrorCode"] = item.step.error_code
        return params

    def sign(self, url: str, params: dict[str, str]) -> str:
        """``X-Twilio-Signature`` as Twilio computes it, by Twilio's own library."""
        signature: str = RequestValidator(self.auth_token).compute_signature(url, params)
        return signature

    def request_for(self, item: Pending) -> tuple[bytes, dict[str, str]]:
        """A status callback: the form, signed with this account's auth token."""
        params = self.callback_params(item)
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": self.sign(item.url, params),
            "I-Twilio-Idempotency-Token": secrets.token_hex(16),
            "User-Agent": "TwilioProxy/1.1",
        }
        return urlencode(params).encode(), headers

    def _authenticated(self, request: ReceivedRequest) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        if user == self.account_sid:
            return secrets.compare_digest(password, self.auth_token)
        expected = self.api_keys.get(user)
        return expected is not None and secrets.compare_digest(password, expected)

    def _invalid(self, form: dict[str, str]) -> web.Response | None:
        to, body = form.get("To"), form.get("Body")
        sender, service = form.get("From"), form.get("MessagingServiceSid")
        if not to:
            return _error(400, 21604, "A 'To' phone number is required.")
        if not body:
            return _error(400, 21602, "Message body is required.")
        if not sender and not service:
            return _error(400, 21603, "A 'From' phone number is required.")
        if not E164.match(to):
            return _error(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if service is not None and service not in self.messaging_services:
            return _error(400, 21705, f"The Messaging Service Sid {service} is invalid.")
        if sender is not None:
            if not E164.match(sender) and not ALPHANUMERIC_SENDER.match(sender):
                return _error(
                    400, 21212, f"The 'From' number {sender} is not a valid phone number."
                )
            if E164.match(sender) and sender not in self.numbers:
                return _error(
                    400,
                    21659,
                    f"'From' {sender} is not a Twilio phone number or Short Code country mismatch",
                )
        if len(body) > MAX_BODY:
            return _error(
                400, 21617, "The concatenated message body exceeds the 1600 character limit."
            )
        return None


def _error(status: int, code: int, message: str) -> web.Response:
    return json_response(status, twilio_error(status, code, message))
