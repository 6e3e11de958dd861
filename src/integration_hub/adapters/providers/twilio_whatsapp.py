"""WhatsApp through Twilio Programmable Messaging (REST API 2010-04-01).

The same Messages resource, credentials, account check and error body as
Twilio SMS (``twilio.TwilioMessages``), with ``whatsapp:`` addresses. A
message is free-form text (``Body``), which WhatsApp delivers only inside the
24 hour session window the recipient opened by writing, or a Content API
template (``ContentSid`` + ``ContentVariables``) chosen by
``metadata["whatsapp"]["template"]``:

* ``{"content_sid": "HX...", "variables": {"1": "Ana"}}``: that template,
  those variables;
* ``{"name": "order_shipped", "language": "es_MX", "parameters": ["Ana"]}``,
  the shape the WhatsApp Cloud adapter reads: the ContentSid the tenant's
  settings map the name to (``content_sids``: ``"name:language"`` first, then
  ``"name"``), the parameters numbered ``{{1}}``, ``{{2}}``, ... in order.

Error codes are Twilio's documented ones (https://www.twilio.com/docs/api/errors):
the SMS adapter's, plus the WhatsApp channel's 63xxx codes and the Content
API's; a code we do not know is classified by its HTTP status.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Self

from pydantic import Field, field_validator, model_validator

from integration_hub.adapters.providers.http import ErrorCodes
from integration_hub.adapters.providers.twilio import (
    ERROR_CODES as SMS_CODES,
)
from integration_hub.adapters.providers.twilio import (
    TwilioAccount,
    TwilioMessages,
)
from integration_hub.domain.delivery import DeliveryResult, OutboundMessage, PermanentFailure

PREFIX = "whatsapp:"
CONTENT_SID = re.compile(r"^HX[0-9a-fA-F]{32}$")
_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")

_TRANSIENT: Mapping[int, str] = {
    **SMS_CODES.transient,
    63010: "provider_error",  # Twilio internal error (not billed as a failure)
    63012: "provider_error",  # Twilio internal error (not billed as a failure)
    63017: "rate_limited",  # the account's combined rate is over its limit
    63018: "rate_limited",  # the WhatsApp sender is over its messaging limit
}

# The account or the WhatsApp sender is misconfigured: an operator has to act.
_CONFIGURATION: Mapping[int, str] = {
    **SMS_CODES.configuration,
    63001: "channel_authentication",  # the channel could not authenticate the request
    63002: "from_not_whatsapp_sender",  # the channel could not find the From address
    63007: "from_not_whatsapp_sender",  # no WhatsApp sender with this From on the account
    63008: "channel_misconfigured",
}

# This message, or this recipient, will not work: retrying changes nothing.
_PERMANENT: Mapping[int, str] = {
    **SMS_CODES.permanent,
    21654: "content_sid_required",  # ContentVariables without ContentSid
    21655: "invalid_content_sid",  # no such template on this account
    21656: "invalid_content_variables",  # not a JSON object of non-empty strings
    63003: "recipient_not_found",  # the To address is not an active WhatsApp user
    63005: "content_rejected",  # WhatsApp refused the content (or the user)
    63013: "channel_policy_violation",
    63014: "blocked_by_user",
    63016: "session_window_closed",  # over 24 h since the user wrote: use a template
    63021: "invalid_content",
    63024: "invalid_whatsapp_recipient",
    63027: "template_not_found",  # no template for this language and locale
    63028: "template_param_count_mismatch",
    63032: "whatsapp_limitation",  # Meta will not deliver to this user
    63049: "marketing_not_delivered",  # Meta chose not to deliver a marketing template
}

ERROR_CODES = ErrorCodes(transient=_TRANSIENT, configuration=_CONFIGURATION, permanent=_PERMANENT)


def whatsapp_address(number: str) -> str:
    """``whatsapp:+15551234567`` for a number given with or without the prefix."""
    return PREFIX + number.strip().removeprefix(PREFIX)


class TwilioWhatsAppSettings(TwilioAccount):
    """A Twilio account's WhatsApp sender and the Content templates it may send.

    Send from ``from_number`` (the WhatsApp sender's E.164 number, with or
    without ``whatsapp:``) or a ``messaging_service_sid`` whose sender pool
    holds it. ``content_sids`` maps template names (``"name"`` or
    ``"name:language"``) to Content API SIDs.
    """

    from_number: str | None = None
    messaging_service_sid: str | None = None
    content_sids: dict[str, str] = Field(default_factory=dict)

    @field_validator("from_number")
    @classmethod
    def _e164(cls, value: str | None) -> str | None:
        if value is not None and not _E164.match(value.strip().removeprefix(PREFIX)):
            raise ValueError("from_number must be an E.164 number such as +15551234567")
        return value

    @field_validator("content_sids")
    @classmethod
    def _sids(cls, value: dict[str, str]) -> dict[str, str]:
        for name, sid in value.items():
            if not name.strip():
                raise ValueError("content_sids: a template name must not be empty")
            if not CONTENT_SID.match(sid):
                # The name is the operator's own key, never a secret: say which.
                raise ValueError(f"content_sids[{name!r}] is not a ContentSid (HX + 32 hex)")
        return value

    @model_validator(mode="after")
    def _sender(self) -> Self:
        if not self.from_number and not self.messaging_service_sid:
            raise ValueError("set from_number or messaging_service_sid")
        return self


class InvalidTemplate(ValueError):
    """``metadata["whatsapp"]["template"]`` is not a usable template request.

    Its text becomes the attempt's message, which the tenant reads: it names
    the rule broken and never quotes a value from the request.
    """


class TemplateNotMapped(ValueError):
    """The template is named, but the tenant's settings give it no ContentSid."""


class TwilioWhatsAppProvider(TwilioMessages[TwilioWhatsAppSettings]):
    """WhatsApp via ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``."""

    name: str = "twilio_whatsapp"
    codes: ErrorCodes = ERROR_CODES

    def refuse(self, message: OutboundMessage) -> DeliveryResult | None:
        """No phone, or a template request that cannot be sent: permanent, unsent."""
        refused = super().refuse(message)
        if refused is not None:
            return refused
        try:
            template_fields(message, self.settings.content_sids)
        except InvalidTemplate as exc:
            return PermanentFailure("invalid_template", f"{self.name}: {exc}")
        except TemplateNotMapped as exc:
            # The fix is an entry in the tenant's settings: an operator's problem.
            return PermanentFailure(
                "template_not_mapped", f"{self.name}: {exc}", configuration=True
            )
        return None

    def form(self, message: OutboundMessage) -> dict[str, str]:
        """The form fields Twilio expects for ``message`` (a valid one: see ``refuse``)."""
        settings = self.settings
        fields = {"To": whatsapp_address(message.recipient.phone or "")}
        template = template_fields(message, settings.content_sids)
        if template is None:
            fields["Body"] = message.body
        else:
            fields.update(template)
        if settings.messaging_service_sid:
            fields["MessagingServiceSid"] = settings.messaging_service_sid
        if settings.from_number:
            fields["From"] = whatsapp_address(settings.from_number)
        if self.status_callback:
            fields["StatusCallback"] = self.status_callback
        return fields


def template_fields(
    message: OutboundMessage, content_sids: Mapping[str, str]
) -> dict[str, str] | None:
    """``ContentSid`` (and ``ContentVariables``) for the message's template, None for text."""
    options = message.metadata.get("whatsapp")
    spec = options.get("template") if isinstance(options, dict) else None
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise InvalidTemplate("template must be an object with content_sid, or name")
    fields = {"ContentSid": _content_sid(spec, content_sids)}
    variables = _variables(spec)
    if variables:
        fields["ContentVariables"] = json.dumps(variables, separators=(",", ":"))
    return fields


def _content_sid(spec: dict[str, Any], content_sids: Mapping[str, str]) -> str:
    sid, name = spec.get("content_sid"), spec.get("name")
    if sid is not None:
        if not isinstance(sid, str) or not CONTENT_SID.match(sid):
            raise InvalidTemplate("template.content_sid must be a ContentSid (HX + 32 hex)")
        return sid
    if not isinstance(name, str) or not name:
        raise InvalidTemplate("template needs content_sid, or a non-empty name")
    language = spec.get("language")
    if language is not None and (not isinstance(language, str) or not language):
        raise InvalidTemplate("template.language must be a language code such as en_US")
    keys = ([f"{name}:{language}"] if language else []) + [name]
    for key in keys:
        if key in content_sids:
            return content_sids[key]
    raise TemplateNotMapped(
        "the template name has no ContentSid in the provider settings (content_sids)"
    )


def _plain(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


def _variables(spec: dict[str, Any]) -> dict[str, str]:
    variables, parameters = spec.get("variables"), spec.get("parameters")
    if variables is not None and parameters is not None:
        raise InvalidTemplate("give template.variables or template.parameters, not both")
    if parameters is not None:
        if not isinstance(parameters, list) or not all(_plain(p) for p in parameters):
            raise InvalidTemplate("template.parameters must be a list of plain values")
        return {str(i): str(p) for i, p in enumerate(parameters, start=1)}
    if variables is None:
        return {}
    if not isinstance(variables, dict) or not all(_plain(v) for v in variables.values()):
        raise InvalidTemplate("template.variables must map placeholders to plain values")
    return {str(k): str(v) for k, v in variables.items()}
