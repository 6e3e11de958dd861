"""A local WhatsApp Cloud API: ``POST /{version}/{phone_number_id}/messages``.

It checks the bearer token, the business phone number id, and the JSON shape
of text and template messages (including the templates it knows and their
parameter counts), and answers with Meta's documented bodies. Typical use::

    async with FakeWhatsApp() as meta:
        settings = WhatsAppSettings(
            phone_number_id=meta.phone_number_id,
            access_token=meta.access_token,
            base_url=meta.base_url,
        )
        meta.queue_error(131026)                     # next send: undeliverable
        meta.messages                                # accepted message bodies

With ``webhook_url`` set (the app's webhook, as configured at Meta) every
accepted message gets status webhooks as Meta sends them (the
``entry[].changes[].value.statuses[]`` JSON, ``X-Hub-Signature-256`` of the
raw body with ``app_secret``), scripted with ``fake_callbacks.Step``::

    meta.webhook_url = f"{hub}/v1/receipts/whatsapp/acme"
    meta.script(Step("read"), Step("delivered"))   # read before delivered, as Meta does
    meta.hold = True                               # ... then: await meta.flush()
    await meta.flush_batch()                       # or every held status in one payload
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from typing import Any

from aiohttp import web

from .fake_callbacks import Pending, Reporter, SentCallback
from .fake_http import FakeHttpServer, ReceivedRequest, json_response

PATH = re.compile(r"^/(?P<version>v[0-9]+\.[0-9]+)/(?P<number>[^/]+)/messages$")
NUMBER_PATH = re.compile(r"^/(?P<version>v[0-9]+\.[0-9]+)/(?P<number>[^/]+)$")
# The Cloud API takes the recipient's E.164 digits; this fake wants them without "+".
WA_ID = re.compile(r"^[1-9][0-9]{7,14}$")
MAX_TEXT = 4096

# HTTP statuses Meta documents for these codes; anything else answers 400.
STATUS_BY_CODE = {
    0: 401,
    190: 401,
    10: 403,
    131005: 403,
    131031: 403,
    132001: 404,
    1: 400,
    2: 503,
    131000: 500,
    131016: 503,
    133004: 503,
}


def meta_error(
    code: int,
    message: str,
    *,
    details: str | None = None,
    subcode: int | None = None,
    error_type: str = "OAuthException",
) -> dict[str, Any]:
    """Meta's documented error body."""
    error: dict[str, Any] = {
        "message": message,
        "type": error_type,
        "code": code,
        "fbtrace_id": "A" + secrets.token_hex(10),
    }
    if details is not None:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    if subcode is not None:
        error["error_subcode"] = subcode
    return {"error": error}


# Titles Meta gives the error codes a failed status carries.
ERROR_TITLES = {
    "131026": "Message undeliverable",
    "131047": "Re-engagement message",
    "131050": "Unable to deliver the message. This recipient has chosen to stop receiving"
    " marketing messages on WhatsApp from your business",
    "131053": "Media upload error",
}


class FakeWhatsApp(FakeHttpServer, Reporter):
    """The Cloud API's messages endpoint, validated like the real one, with status webhooks."""

    def __init__(
        self,
        *,
        phone_number_id: str = "106540352242922",
        access_token: str = "EAAG-fake-whatsapp-access-token-0123456789",  # noqa: S107 - a fake credential, on purpose
        templates: dict[str, int] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        FakeHttpServer.__init__(self, host=host, port=port)
        Reporter.__init__(self)
        self.waba_id = "102290129340398"
        self.app_secret = "fake-whatsapp-app-secret-0123456789"
        self.webhook_url: str | None = None
        self._statuses: dict[tuple[str, str, str | None], dict[str, Any]] = {}
        self.phone_number_id = phone_number_id
        self.access_token = access_token
        # Approved templates and how many body parameters each expects.
        self.templates = dict(templates or {"hello_world": 0, "order_update": 2})
        self.messages: list[dict[str, Any]] = []

    async def stop(self) -> None:
        """Stop sending webhooks, then stop listening."""
        await self.close_reporter()
        await super().stop()

    def queue_error(
        self,
        code: int,
        *,
        status: int | None = None,
        message: str | None = None,
        details: str | None = None,
        subcode: int | None = None,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
    ) -> None:
        """Answer the next valid request with a Cloud API error body."""
        body = meta_error(
            code, message or f"(#{code}) Cloud API error", details=details, subcode=subcode
        )
        status = status or STATUS_BY_CODE.get(code, 400)
        self.queue_response(status, body, headers=headers, delay=delay)

    async def handle(self, request: ReceivedRequest) -> web.StreamResponse:
        """Validate like the Cloud API, then answer (scripted or accepted)."""
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        number = NUMBER_PATH.match(request.path)
        if number is not None and request.method == "GET":
            if not secrets.compare_digest(token, self.access_token):
                return _error(401, 190, "Invalid OAuth access token - Cannot parse access token")
            if number["number"] != self.phone_number_id:
                return _error(400, 100, f"Object with ID '{number['number']}' does not exist")
            return json_response(
                200,
                {
                    "display_phone_number": "+1 555 0100",
                    "verified_name": "Fake Business",
                    "id": self.phone_number_id,
                },
            )
        match = PATH.match(request.path)
        if match is None or request.method != "POST":
            return _error(400, 2500, f"Unknown path components: {request.path}")
        if not secrets.compare_digest(token, self.access_token):
            return _error(401, 190, "Invalid OAuth access token - Cannot parse access token")
        if match["number"] != self.phone_number_id:
            return json_response(
                400,
                meta_error(
                    100,
                    f"Unsupported post request. Object with ID '{match['number']}' does not "
                    "exist, cannot be loaded due to missing permissions, or does not support "
                    "this operation.",
                    subcode=33,
                    error_type="GraphMethodException",
                ),
            )
        problem = self._invalid(request.json)
        if problem is not None:
            return problem
        return await self.answer(request)

    def accept(self, request: ReceivedRequest) -> web.StreamResponse:
        """Record the message and answer 200 with its wamid."""
        payload = request.json
        self.messages.append(payload)
        wamid = "wamid.HBgL" + secrets.token_urlsafe(24)
        if self.webhook_url:
            url = self.webhook_url
            self.report([Pending(wamid, payload["to"], step, url) for step in self.next_steps()])
        return json_response(
            200,
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": payload["to"], "wa_id": payload["to"]}],
                "messages": [{"id": wamid}],
            },
        )

    def status(self, item: Pending) -> dict[str, Any]:
        """One ``statuses[]`` element as Meta writes it.

        A step repeated for the same message is the same status sent again
        (Meta retries a webhook): the same element, timestamp included.
        """
        key = (item.message_id, item.step.status, item.step.error_code)
        found = self._statuses.get(key)
        if found is None:
            found = self._statuses[key] = self._new_status(item)
        return found

    def _new_status(self, item: Pending) -> dict[str, Any]:
        status: dict[str, Any] = {
            "id": item.message_id,
            "status": item.step.status,
            "timestamp": str(int(time.time())),
            "recipient_id": item.recipient,
        }
        if item.step.status in ("sent", "delivered"):
            status["conversation"] = {
                "id": "CONVERSATION_" + item.message_id[-8:],
                "origin": {"type": "utility"},
            }
            status["pricing"] = {"billable": True, "pricing_model": "CBP", "category": "utility"}
        if item.step.error_code is not None:
            code = item.step.error_code
            title = ERROR_TITLES.get(code, f"Error {code}")
            status["errors"] = [
                {
                    "code": int(code),
                    "title": title,
                    "message": title,
                    "error_data": {"details": title},
                }
            ]
        return status

    def webhook(self, items: list[Pending]) -> dict[str, Any]:
        """The webhook payload carrying the statuses of ``items``."""
        return {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": self.waba_id,
                    "changes": [
                        {
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": "15550100",
                                    "phone_number_id": self.phone_number_id,
                                },
                                "statuses": [self.status(item) for item in items],
                            },
                            "field": "messages",
                        }
                    ],
                }
            ],
        }

    def signed(self, payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        """The raw body and headers of a webhook POST, signed with the app secret."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        digest = hmac.new(self.app_secret.encode(), body, hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": f"sha256={digest}",
            "User-Agent": "facebookexternalua",
        }
        return body, headers

    def request_for(self, item: Pending) -> tuple[bytes, dict[str, str]]:
        """A webhook with the one status of ``item``."""
        return self.signed(self.webhook([item]))

    async def flush_batch(self) -> SentCallback | None:
        """Send every held status in one webhook payload (Meta batches them too)."""
        items, self.pending = self.pending, []
        if not items:
            return None
        body, headers = self.signed(self.webhook(items))
        return await self.post(items[0].url, body, headers)

    def _invalid(self, payload: Any) -> web.Response | None:
        if not isinstance(payload, dict):
            return _invalid_parameter("The request body must be a JSON object.")
        if payload.get("messaging_product") != "whatsapp":
            return _invalid_parameter("The parameter messaging_product is required.")
        if payload.get("recipient_type", "individual") != "individual":
            return _invalid_parameter("recipient_type must be individual.")
        to = payload.get("to")
        if not isinstance(to, str) or not WA_ID.match(to):
            return _error(
                400, 131009, "(#131009) Parameter value is not valid", f"Invalid 'to': {to!r}"
            )
        kind = payload.get("type", "text")
        if kind == "text":
            text = payload.get("text")
            body = text.get("body") if isinstance(text, dict) else None
            if not isinstance(body, str) or not body:
                return _invalid_parameter("The parameter text['body'] is required.")
            if len(body) > MAX_TEXT:
                return _invalid_parameter(f"text['body'] is longer than {MAX_TEXT} characters.")
            return None
        if kind == "template":
            return self._invalid_template(payload.get("template"))
        return _invalid_parameter(f"Unsupported message type {kind!r}.")

    def _invalid_template(self, template: Any) -> web.Response | None:
        if not isinstance(template, dict) or not isinstance(template.get("name"), str):
            return _invalid_parameter("The parameter template['name'] is required.")
        language = template.get("language")
        if not isinstance(language, dict) or not isinstance(language.get("code"), str):
            return _invalid_parameter("The parameter template['language']['code'] is required.")
        expected = self.templates.get(template["name"])
        if expected is None:
            return _error(
                404,
                132001,
                "(#132001) Template name does not exist in the translation",
                f"template name ({template['name']}) does not exist in {language['code']}",
            )
        given = 0
        for component in template.get("components", []):
            if component.get("type") == "body":
                parameters = component.get("parameters", [])
                if any(p.get("type") != "text" or "text" not in p for p in parameters):
                    return _invalid_parameter("body parameters must be {type: text, text}.")
                given += len(parameters)
        if given != expected:
            return _error(
                400,
                132000,
                "(#132000) Number of parameters does not match the expected number of params",
                f"body: number of localizable_params ({given}) does not match the "
                f"expected number of params ({expected})",
            )
        return None


def _error(status: int, code: int, message: str, details: str | None = None) -> web.Response:
    return json_response(status, meta_error(code, message, details=details))


def _invalid_parameter(details: str) -> web.Response:
    return _error(400, 100, "(#100) Invalid parameter", details)
