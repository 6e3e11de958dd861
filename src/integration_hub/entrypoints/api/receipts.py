"""The public receipt endpoints under /v1/receipts: no API key, the provider's signature.

Each endpoint reads the raw body (at most ``MAX_BODY_BYTES``), checks the
signature with the tenant's own secret from its stored provider settings,
parses with the adapters in ``adapters/receipts`` and hands the receipts to
``ReceiptService.record``: the endpoint only records and answers.

What a caller can learn is bounded: an unknown tenant, a tenant without that
provider (or without the secret), a bad signature and an untrusted SNS
topic or certificate all get the same 403 problem, so nobody can probe which
tenants exist. A missing signature header is 401, a body that is not the
provider's format 400, one over 1 MiB 413. Every refusal is counted
(``ihub_receipts_rejected_total{provider,reason}``) and logged with its reason,
never with the payload or a secret.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response
from fastapi.types import DecoratedCallable

from integration_hub.adapters.receipts import ses, sns, twilio, whatsapp
from integration_hub.adapters.receipts.common import (
    BadSignature,
    BodyTooLarge,
    MalformedReceipt,
    ReceiptRejected,
    UntrustedSource,
    check_size,
    load_object,
)
from integration_hub.bootstrap import Hub
from integration_hub.domain import errors
from integration_hub.domain.models import from_epoch
from integration_hub.domain.receipts import Receipt
from integration_hub.domain.routing import Channel
from integration_hub.domain.tenants import TENANT_ID
from integration_hub.entrypoints.api import problems
from integration_hub.entrypoints.api.problems import Problem

log = logging.getLogger(__name__)

PREFIX: Final = "/v1/receipts"
router = APIRouter(prefix=PREFIX, tags=["receipts"])

# The stored provider settings each endpoint reads its secret from.
TWILIO_SETTINGS: Final = "twilio"
TWILIO_WHATSAPP_SETTINGS: Final = "twilio_whatsapp"
WHATSAPP_SETTINGS: Final = "whatsapp_cloud"
SES_SETTINGS: Final = "ses"

TWIML_EMPTY: Final = '<?xml version="1.0" encoding="UTF-8"?><Response/>'

_PROBLEM = {"model": Problem, "content": {"application/problem+json": {}}}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {**_PROBLEM, "description": "the body is not the provider's format"},
    401: {**_PROBLEM, "description": "the provider's signature header is missing"},
    403: {
        **_PROBLEM,
        "description": "not signed for this endpoint (the same answer for an unknown tenant,"
        " one without this provider, and a bad signature)",
    },
    413: {**_PROBLEM, "description": "the body is over 1 MiB"},
    503: {**_PROBLEM, "description": "IHUB_PUBLIC_URL is not set, or the store is unavailable"},
}


class _Refused(Exception):
    """A request refused before any receipt was read: answered as ``response``."""

    def __init__(self, reason: str, response: Response) -> None:
        self.reason = reason
        self.response = response
        super().__init__(reason)


def _hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


def _forbidden() -> Response:
    return problems.problem(
        403,
        "receipt-rejected",
        "Forbidden",
        "the request is not signed for this endpoint",
    )


def _answer(exc: ReceiptRejected) -> tuple[str, Response]:
    """(metric reason, response) for an adapter's refusal."""
    if isinstance(exc, BodyTooLarge):
        too_large = problems.problem(
            413, "payload-too-large", "Payload too large", str(exc), field="body"
        )
        return "too_large", too_large
    if isinstance(exc, UntrustedSource):
        return "untrusted", _forbidden()
    if isinstance(exc, BadSignature):
        return "signature", _forbidden()
    assert isinstance(exc, MalformedReceipt)
    detail = f"the body is not a receipt in the provider's format: {exc}"
    return "malformed", problems.problem(400, "malformed-receipt", "Bad request", detail)


def _rejected(hub: Hub, provider: str, tenant: str, reason: str, why: str) -> None:
    hub.receipts.metrics.receipt_rejected(provider, reason)
    # The tenant id is the path's, checked against the id pattern first (or
    # replaced): nothing else of the request reaches the log line.
    shown = tenant if TENANT_ID.fullmatch(tenant) else "(not a tenant id)"
    log.warning(
        "receipt refused: provider=%s tenant=%s reason=%s: %s", provider, shown, reason, why
    )


def _unavailable_without_public_url(hub: Hub) -> str:
    if hub.settings.public_url is None:
        raise errors.Unavailable("receipts need IHUB_PUBLIC_URL", retry_after=60.0)
    return hub.settings.public_url


async def _settings(hub: Hub, tenant: str, provider: str) -> Mapping[str, Any] | None:
    """The tenant's stored settings of ``provider``; None for an unknown tenant too."""
    if not TENANT_ID.fullmatch(tenant):
        return None
    if await hub.tenants.get(tenant) is None:
        return None
    try:
        return await hub.credentials.get_credentials(tenant, provider)
    except errors.Unavailable:
        raise
    except errors.HubError as exc:
        # A master key gone or a ciphertext that does not decrypt: the
        # operator's problem; the caller gets the same 403 as anyone.
        log.error("settings of %s for tenant %s cannot be read: %s", provider, tenant, exc)
        return None


def _secret(config: Mapping[str, Any] | None, name: str) -> str:
    value = (config or {}).get(name)
    return value if isinstance(value, str) else ""


async def _body(request: Request) -> bytes:
    body = await request.body()
    check_size(body)
    return body


def _now(hub: Hub) -> datetime:
    return from_epoch(hub.clock.now())


async def _record(hub: Hub, receipts: list[Receipt], routed_as: str | None = None) -> None:
    if receipts:
        await hub.receipts.record(receipts, routed_as=routed_as)


# -- Twilio ---------------------------------------------------------------------------


def _form(body: bytes) -> dict[str, list[str]]:
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text))
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedReceipt("the body is not a URL-encoded form") from exc
    params: dict[str, list[str]] = {}
    for name, value in pairs:
        params.setdefault(name, []).append(value)
    return params


def _twilio_route(path: str, summary: str) -> Callable[[DecoratedCallable], DecoratedCallable]:
    return router.post(
        path,
        status_code=204,
        responses={
            **ERRORS,
            200: {
                "description": "an inbound message: empty TwiML (STOP/START keywords applied)",
                "content": {"text/xml": {}},
            },
            204: {"description": "a status callback, recorded"},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}},
            },
            "parameters": [
                {
                    "name": twilio.SIGNATURE_HEADER,
                    "in": "header",
                    "required": True,
                    "schema": {"type": "string"},
                    "description": "base64 HMAC-SHA1 of the public URL and the sorted parameters",
                }
            ],
        },
        summary=summary,
    )


@_twilio_route("/twilio/{tenant}", "Twilio status callback or inbound SMS")
async def twilio_callback(request: Request, tenant: str) -> Response:
    """Verify X-Twilio-Signature over ``{IHUB_PUBLIC_URL}/v1/receipts/twilio/{tenant}``;
    record a status callback, or apply an inbound STOP/START keyword."""
    return await _twilio(request, tenant, TWILIO_SETTINGS)


@_twilio_route(
    "/twilio_whatsapp/{tenant}", "Twilio status callback or inbound message, WhatsApp sender"
)
async def twilio_whatsapp_callback(request: Request, tenant: str) -> Response:
    """The same for the ``twilio_whatsapp`` provider: verified with the auth token of its
    settings, recorded for the notifications it sent."""
    return await _twilio(request, tenant, TWILIO_WHATSAPP_SETTINGS, TWILIO_WHATSAPP_SETTINGS)


async def _twilio(
    request: Request, tenant: str, settings: str, routed_as: str | None = None
) -> Response:
    """A Twilio callback to ``/{settings}/{tenant}``, signed with that provider's auth token."""
    hub = _hub(request)
    public_url = _unavailable_without_public_url(hub)
    provider = twilio.PROVIDER
    try:
        body = await _body(request)
        params = _form(body)
        header = request.headers.get(twilio.SIGNATURE_HEADER)
        if not header:
            detail = f"the {twilio.SIGNATURE_HEADER} header is required"
            missing = problems.problem(
                401, "unauthenticated", "Unauthenticated", detail, field=twilio.SIGNATURE_HEADER
            )
            raise _Refused("signature", missing)
        config = await _settings(hub, tenant, settings)
        token = _secret(config, "auth_token")
        if not token:
            raise BadSignature("no Twilio auth token for this endpoint")
        url = f"{public_url}{PREFIX}/{settings}/{tenant}"
        if request.url.query:
            url += "?" + request.url.query
        twilio.verify(token, url, params, header)
        single = {name: values[0] for name, values in params.items()}
        now = _now(hub)
        receipts = twilio.parse_status(tenant, single, now)
        if receipts:
            await _record(hub, receipts, routed_as)
            return Response(status_code=204)
        await _inbound(hub, tenant, single)
        return Response(TWIML_EMPTY, status_code=200, media_type="text/xml")
    except _Refused as refused:
        _rejected(hub, provider, tenant, refused.reason, "signature header missing")
        return refused.response
    except ReceiptRejected as exc:
        reason, response = _answer(exc)
        _rejected(hub, provider, tenant, reason, str(exc))
        return response


async def _inbound(hub: Hub, tenant: str, params: Mapping[str, str]) -> None:
    """An inbound SMS: an opt-out or opt-in keyword changes the sender's suppression."""
    policy = hub.receipts.policy
    action = twilio.inbound_keyword(params.get("Body") or "", policy.opt_out, policy.opt_in)
    if action is None:
        return
    sender = twilio.inbound_sender(params)
    # WhatsApp through Twilio names the sender whatsapp:+...: that channel's list.
    from_whatsapp = (params.get("From") or "").strip().lower().startswith("whatsapp:")
    channel = Channel.WHATSAPP if from_whatsapp else Channel.SMS
    if action is twilio.OptAction.OPT_OUT:
        await hub.receipts.opt_out(tenant, channel, sender)
        log.info("inbound opt-out keyword: sender suppressed on %s", channel)
    else:
        lifted = await hub.receipts.opt_in(tenant, channel, sender)
        log.info("inbound opt-in keyword: %s", "opt-out lifted" if lifted else "nothing to lift")


# -- WhatsApp Cloud API ---------------------------------------------------------------


@router.get(
    "/whatsapp/{tenant}",
    responses={
        **ERRORS,
        200: {"description": "hub.challenge, echoed", "content": {"text/plain": {}}},
    },
    openapi_extra={
        "parameters": [
            {"name": name, "in": "query", "required": True, "schema": {"type": "string"}}
            for name in ("hub.mode", "hub.verify_token", "hub.challenge")
        ]
    },
    summary="WhatsApp webhook verification (Meta's GET handshake)",
)
async def whatsapp_verify(request: Request, tenant: str) -> Response:
    """Echo ``hub.challenge`` when ``hub.verify_token`` is the tenant's webhook verify token."""
    hub = _hub(request)
    _unavailable_without_public_url(hub)
    provider = whatsapp.PROVIDER
    try:
        query = dict(request.query_params.items())
        config = await _settings(hub, tenant, WHATSAPP_SETTINGS)
        challenge = whatsapp.verify_subscription(query, _secret(config, "webhook_verify_token"))
    except ReceiptRejected as exc:
        reason, response = _answer(exc)
        _rejected(hub, provider, tenant, reason, str(exc))
        return response
    return Response(challenge, media_type="text/plain")


@router.post(
    "/whatsapp/{tenant}",
    status_code=200,
    responses={**ERRORS, 200: {"description": "recorded"}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        "parameters": [
            {
                "name": whatsapp.SIGNATURE_HEADER,
                "in": "header",
                "required": True,
                "schema": {"type": "string", "pattern": "^sha256=[0-9a-fA-F]{64}$"},
                "description": "HMAC-SHA256 of the raw body with the app secret",
            }
        ],
    },
    summary="WhatsApp Cloud API webhook (message statuses)",
)
async def whatsapp_webhook(request: Request, tenant: str) -> Response:
    """Verify X-Hub-Signature-256 over the raw body with the tenant's app secret; record
    every status in it."""
    hub = _hub(request)
    _unavailable_without_public_url(hub)
    provider = whatsapp.PROVIDER
    try:
        body = await _body(request)
        header = request.headers.get(whatsapp.SIGNATURE_HEADER)
        if not header:
            detail = f"the {whatsapp.SIGNATURE_HEADER} header is required"
            missing = problems.problem(
                401, "unauthenticated", "Unauthenticated", detail, field=whatsapp.SIGNATURE_HEADER
            )
            raise _Refused("signature", missing)
        config = await _settings(hub, tenant, WHATSAPP_SETTINGS)
        whatsapp.verify(_secret(config, "app_secret"), body, header)
        # Notifications name the provider as routes do (whatsapp_cloud).
        await _record(hub, whatsapp.parse(tenant, body, _now(hub)), WHATSAPP_SETTINGS)
    except _Refused as refused:
        _rejected(hub, provider, tenant, refused.reason, "signature header missing")
        return refused.response
    except ReceiptRejected as exc:
        reason, response = _answer(exc)
        _rejected(hub, provider, tenant, reason, str(exc))
        return response
    return Response(status_code=200)


# -- Amazon SES through SNS -----------------------------------------------------------


def _topics(config: Mapping[str, Any] | None) -> list[str]:
    value = (config or {}).get("receipt_topic_arns")
    if not isinstance(value, list | tuple):
        return []
    return [topic for topic in value if isinstance(topic, str)]


@router.post(
    "/ses/{tenant}",
    status_code=200,
    responses={**ERRORS, 200: {"description": "recorded, or the subscription confirmed"}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "an SNS message (SNS sends it as text/plain)",
            "content": {
                "text/plain": {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": "object"}},
            },
        }
    },
    summary="Amazon SES events through an SNS HTTPS subscription",
)
async def ses_notification(request: Request, tenant: str) -> Response:
    """Verify the SNS signature (certificate from an SNS host only) and the tenant's topic;
    confirm a subscription, or record the SES event of a notification."""
    hub = _hub(request)
    _unavailable_without_public_url(hub)
    provider = ses.PROVIDER
    try:
        body = await _body(request)
        # The shape first, the same for every tenant: a stranger's garbage is
        # 400 whether or not the tenant exists.
        sns.string_to_sign(load_object(body))
        config = await _settings(hub, tenant, SES_SETTINGS)
        topics = _topics(config)
        if not topics:
            raise BadSignature("no SNS topic configured for this endpoint")
        message = await hub.sns().verify(body, topics)
        if message.type == sns.SUBSCRIPTION_CONFIRMATION:
            await hub.sns().confirm(message)
            log.info("confirmed the SNS subscription of tenant %s to %s", tenant, message.topic_arn)
        elif message.type == sns.NOTIFICATION:
            await _record(hub, ses.parse_notification(tenant, message, _now(hub)))
    except ReceiptRejected as exc:
        reason, response = _answer(exc)
        _rejected(hub, provider, tenant, reason, str(exc))
        return response
    return Response(status_code=200)
