"""WhatsApp messages through Meta's WhatsApp Cloud API (Graph API ``/messages``).

Classification follows Meta's advice to key on ``error.code`` rather than the
HTTP status: the Cloud API answers throughput limits (130429) with HTTP 400.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import aiohttp
from pydantic import BaseModel, ConfigDict, SecretStr

from integration_hub.adapters.providers.http import (
    JSON,
    ErrorCodes,
    HttpOptions,
    HttpProvider,
    HttpReply,
    classify_error,
    int_code,
    json_body,
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

DEFAULT_BASE_URL = "https://graph.facebook.com"
DEFAULT_API_VERSION = "v21.0"

_TRANSIENT: Mapping[int, str] = {
    1: "provider_error",  # API Unknown: possibly a server error
    2: "provider_unavailable",  # API Service: downtime or overload
    4: "rate_limited",  # app reached its API call limit
    80007: "rate_limited",  # WhatsApp Business Account rate limit
    130429: "rate_limited",  # Cloud API throughput reached
    131000: "provider_error",  # something went wrong
    131016: "provider_unavailable",  # service unavailable
    131048: "rate_limited",  # spam rate limit: lifts with time
    131056: "rate_limited",  # too many messages to the same recipient
    131057: "provider_unavailable",  # account in maintenance mode
    133004: "provider_unavailable",  # server temporarily unavailable
}

# Token, permissions, account or business number: an operator has to act.
_CONFIGURATION: Mapping[int, str] = {
    0: "authentication",
    3: "missing_capability",
    10: "permission_denied",
    33: "invalid_phone_number_id",  # the business phone number was deleted
    190: "access_token_invalid",
    368: "policy_block",
    131005: "access_denied",
    131031: "account_locked",
    131037: "display_name_not_approved",
    131042: "payment_issue",
    133010: "phone_number_not_registered",
    **dict.fromkeys(range(200, 300), "permission_denied"),
}

# This message, or this recipient, will not work: retrying changes nothing.
_PERMANENT: Mapping[int, str] = {
    100: "invalid_parameter",
    130472: "experiment_excluded",
    131008: "missing_parameter",
    131009: "invalid_parameter_value",
    131021: "recipient_is_sender",
    131026: "undeliverable",
    131047: "reengagement_window_closed",  # over 24 h since the user wrote: use a template
    131049: "not_delivered_ecosystem",
    131050: "marketing_opt_out",
    131051: "unsupported_message_type",
    131052: "media_download_error",
    131053: "media_upload_error",
    132000: "template_param_count_mismatch",
    132001: "template_not_found",
    132005: "template_text_too_long",
    132007: "template_policy_violation",
    132012: "template_param_format_mismatch",
    132015: "template_paused",
    132016: "template_disabled",
    135000: "generic_user_error",
}

ERROR_CODES = ErrorCodes(transient=_TRANSIENT, configuration=_CONFIGURATION, permanent=_PERMANENT)


class WhatsAppSettings(BaseModel):
    """One WhatsApp business phone number and the token allowed to send from it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    phone_number_id: str
    access_token: SecretStr
    api_version: str = DEFAULT_API_VERSION
    base_url: str = DEFAULT_BASE_URL
    # Receipts (the webhook at /v1/receipts/whatsapp/{tenant}): the app secret
    # Meta signs each POST with, and the token the tenant chose for the GET
    # handshake. Optional: without them the webhook refuses everything.
    app_secret: SecretStr | None = None
    webhook_verify_token: SecretStr | None = None


class InvalidTemplate(ValueError):
    """``metadata["whatsapp"]["template"]`` is not a usable template request.

    Its text becomes the attempt's message, which the tenant reads: it names
    the rule broken and never quotes a value from the request.
    """


class WhatsAppProvider(HttpProvider):
    """WhatsApp via ``POST /{version}/{phone_number_id}/messages``."""

    name: str = "whatsapp_cloud"

    def __init__(
        self,
        settings: WhatsAppSettings,
        *,
        options: HttpOptions | None = None,
        session: aiohttp.ClientSession | None = None,
        outbound: OutboundPolicy | None = None,
    ) -> None:
        super().__init__(options=options, session=session, outbound=outbound)
        self.settings = settings
        self._check_base_url(settings.base_url)
        base = settings.base_url.rstrip("/")
        version = quote(settings.api_version, safe="")
        number = quote(settings.phone_number_id, safe="")
        self._url = f"{base}/{version}/{number}/messages"
        self._number_url = f"{base}/{version}/{number}?fields=display_phone_number,verified_name"

    def __repr__(self) -> str:
        return f"WhatsAppProvider(phone_number_id={self.settings.phone_number_id!r})"

    def _secrets(self) -> tuple[str, ...]:
        return (self.settings.access_token.get_secret_value(),)

    async def send(self, message: OutboundMessage) -> DeliveryResult:
        """Send one text or template message; classify whatever Meta answers."""
        if not message.recipient.phone:
            return PermanentFailure("invalid_recipient", "whatsapp: the recipient has no phone")
        try:
            payload = build_payload(message)
        except InvalidTemplate as exc:
            return PermanentFailure("invalid_template", f"whatsapp: {exc}")
        token = self.settings.access_token.get_secret_value()
        reply = await self._request(
            "POST",
            self._url,
            headers={"Authorization": f"Bearer {token}", "Content-Type": JSON},
            body=json_body(payload),
        )
        if not isinstance(reply, HttpReply):
            return reply
        return classify(reply, self._secrets())

    async def check(self) -> ProviderCheck:
        """Read the phone number object: proves the token and the phone number id."""
        token = self.settings.access_token.get_secret_value()
        secrets = self._secrets()
        return await self._probe(
            self._number_url,
            {"Authorization": f"Bearer {token}"},
            _describe_number,
            lambda r: classify(r, secrets),
        )


def _describe_number(reply: HttpReply) -> str:
    body = reply.json_object() or {}
    number = body.get("display_phone_number", "?")
    return f"phone number {number} ({body.get('verified_name', 'unverified name')})"


def build_payload(message: OutboundMessage) -> dict[str, Any]:
    """The Cloud API request body: a template if the metadata asks for one, else text."""
    payload: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        # The Cloud API wants the E.164 digits without the leading +.
        "to": (message.recipient.phone or "").removeprefix("+"),
        # Comes back in status webhooks, so a callback can find the notification.
        "biz_opaque_callback_data": message.notification_id,
    }
    options = message.metadata.get("whatsapp")
    template = options.get("template") if isinstance(options, dict) else None
    if template is None:
        payload["type"] = "text"
        payload["text"] = {"body": message.body}
        return payload
    payload["type"] = "template"
    payload["template"] = _template(template)
    return payload


def _template(spec: Any) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise InvalidTemplate("template must be an object with name and language")
    name, language = spec.get("name"), spec.get("language", "en_US")
    parameters = spec.get("parameters", [])
    if not isinstance(name, str) or not name:
        raise InvalidTemplate("template.name must be a non-empty string")
    if not isinstance(language, str) or not language:
        raise InvalidTemplate("template.language must be a language code such as en_US")
    if not isinstance(parameters, list) or any(isinstance(p, dict | list) for p in parameters):
        raise InvalidTemplate("template.parameters must be a list of plain values")
    template: dict[str, Any] = {"name": name, "language": {"code": language}}
    if parameters:
        body = [{"type": "text", "text": str(p)} for p in parameters]
        template["components"] = [{"type": "body", "parameters": body}]
    return template


def classify(reply: HttpReply, secrets: tuple[str, ...] = ()) -> DeliveryResult:
    """Translate a Cloud API answer into a delivery result."""
    body = reply.json_object()
    if 200 <= reply.status < 300:
        message_id = _message_id(body)
        if message_id:
            return Delivered(message_id)
        # Meta may have accepted it; a possible duplicate beats a silent loss.
        return TransientFailure(
            "unexpected_response", f"whatsapp: HTTP {reply.status} without a message id"
        )
    error = body.get("error") if body else None
    code: int | None = None
    subcode: int | None = None
    text: str | None = None
    if isinstance(error, dict):
        code = int_code(error.get("code"))
        subcode = int_code(error.get("error_subcode"))
        text = _error_text(error)
    result = classify_error(
        "whatsapp", reply, code=code, text=text, codes=ERROR_CODES, secrets=secrets
    )
    if code == 100 and subcode == 33 and isinstance(result, PermanentFailure):
        # "Unsupported post request": the phone number id does not exist or the
        # token cannot see it. Our settings are wrong, not this message.
        return replace(result, error_class="invalid_phone_number_id", configuration=True)
    return result


def _message_id(body: dict[str, Any] | None) -> str | None:
    messages = body.get("messages") if body else None
    if isinstance(messages, list) and messages and isinstance(messages[0], dict):
        found = messages[0].get("id")
        return found if isinstance(found, str) and found else None
    return None


def _error_text(error: dict[str, Any]) -> str | None:
    """Meta's message, with the ``details`` that say which parameter was wrong."""
    text = error.get("message")
    data = error.get("error_data")
    details = data.get("details") if isinstance(data, dict) else None
    parts = [p for p in (text, details) if isinstance(p, str) and p]
    trace = error.get("fbtrace_id")
    if isinstance(trace, str) and trace:
        parts.append(f"fbtrace_id={trace}")
    return " | ".join(parts) or None
