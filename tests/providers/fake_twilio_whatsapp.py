"""A local Twilio Messages API for WhatsApp: ``whatsapp:`` addresses and Content templates.

The Twilio fake (same account, auth, Account resource, error bodies and signed
status callbacks), validating what Twilio validates for WhatsApp: ``To`` and
``From`` are ``whatsapp:+E164``, ``From`` is one of the account's WhatsApp
senders (else 63007), a ``ContentSid`` names one of the account's Content
templates (else 21655), ``ContentVariables`` is a JSON object of non-empty
strings (else 21656) and needs a ``ContentSid`` (else 21654). A free-form
``Body`` to a recipient with no open 24 hour session is accepted and then
fails, as on Twilio, with a ``failed`` status callback carrying 63016::

    async with FakeTwilioWhatsApp() as twilio:
        twilio.sessions.add("+5215512345678")      # this user wrote in the last 24 h
        twilio.contents                               # {ContentSid: number of variables}
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from .fake_callbacks import Step
from .fake_twilio import E164, MAX_BODY, FakeTwilio, _error

CONTENT_SID = re.compile(r"^HX[0-9a-fA-F]{32}$")
ORDER_SHIPPED = "HX" + "a" * 32
WELCOME = "HX" + "b" * 32


def _number(address: str | None, prefix: str = "whatsapp:") -> str | None:
    """The E.164 number of a ``whatsapp:`` address, or None if it is not one."""
    if address is None or not address.startswith(prefix):
        return None
    number = address.removeprefix(prefix)
    return number if E164.match(number) else None


class FakeTwilioWhatsApp(FakeTwilio):
    """Twilio's Messages resource for the WhatsApp channel."""

    def __init__(
        self,
        *,
        senders: set[str] | None = None,
        contents: dict[str, int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.senders = set(senders or {"+14155238886"})
        # ContentSid -> how many {{n}} placeholders the template has.
        self.contents = dict(contents or {ORDER_SHIPPED: 2, WELCOME: 0})
        self.sessions: set[str] = set()

    @property
    def whatsapp_sender(self) -> str:
        """A WhatsApp sender (E.164) this account has."""
        return sorted(self.senders)[0]

    def credentials(self, **overrides: Any) -> dict[str, Any]:
        """The hub's ``twilio_whatsapp`` settings that send to this fake."""
        return {
            "account_sid": self.account_sid,
            "auth_token": self.auth_token,
            "from_number": self.whatsapp_sender,
            "base_url": self.base_url,
            "content_sids": {"order_shipped": ORDER_SHIPPED, "welcome:es_MX": WELCOME},
            **overrides,
        }

    def steps_for(self, form: dict[str, str]) -> list[Step]:
        """Free-form text outside the session window fails after acceptance (63016)."""
        if "ContentSid" not in form and _number(form.get("To")) not in self.sessions:
            return [Step("failed", error_code="63016")]
        return self.next_steps()

    def _invalid(self, form: dict[str, str]) -> web.Response | None:
        to, body = form.get("To"), form.get("Body")
        sender, service = form.get("From"), form.get("MessagingServiceSid")
        content, variables = form.get("ContentSid"), form.get("ContentVariables")
        if not to:
            return _error(400, 21604, "A 'To' phone number is required.")
        if not sender and not service:
            return _error(400, 21603, "A 'From' phone number is required.")
        if _number(to) is None:
            return _error(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if service is not None and service not in self.messaging_services:
            return _error(400, 21705, f"The Messaging Service Sid {service} is invalid.")
        if sender is not None and _number(sender) not in self.senders:
            return _error(
                400, 63007, "Twilio could not find a Channel with the specified From address"
            )
        if variables is not None and content is None:
            return _error(400, 21654, "ContentSid Required")
        if content is not None:
            return self._invalid_content(content, variables)
        if not body:
            return _error(400, 21602, "Message body is required.")
        if len(body) > MAX_BODY:
            return _error(
                400, 21617, "The concatenated message body exceeds the 1600 character limit."
            )
        return None

    def _invalid_content(self, content: str, variables: str | None) -> web.Response | None:
        if not CONTENT_SID.match(content) or content not in self.contents:
            return _error(400, 21655, "The ContentSid is Invalid")
        if variables is None:
            return None
        try:
            values = json.loads(variables)
        except ValueError:
            values = None
        valid = isinstance(values, dict) and all(isinstance(v, str) and v for v in values.values())
        if not valid:
            return _error(400, 21656, "The ContentVariables Parameter is invalid")
        return None
