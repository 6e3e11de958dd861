"""The receipt callbacks through API Gateway events: what the app gets is what was signed.

Providers sign raw bytes (WhatsApp: HMAC-SHA256 of the body; Twilio: HMAC-SHA1
of the URL and the form parameters), so the API function must hand the app
the body exactly as sent, decoded from base64 where API Gateway encoded it,
with the signature headers and the query string. This runs the handler the
API function uses (``aws_lambda.asgi_handler``) on an app that echoes what it
received, with API Gateway HTTP API (payload 2.0) events.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Request, Response

from integration_hub.entrypoints import aws_lambda
from support import api_gateway_event


@pytest.fixture(autouse=True)
def lambda_loop() -> Iterator[None]:
    """The container's event loop, as ``aws_lambda._loop`` sets it (Mangum runs on it)."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield
    finally:
        loop.close()
        asyncio.set_event_loop(None)


def echo_app() -> FastAPI:
    app = FastAPI()

    @app.api_route("/v1/receipts/{provider}/{tenant}", methods=["GET", "POST"])
    async def echo(provider: str, tenant: str, request: Request) -> Response:
        body = await request.body()
        seen = {
            "provider": provider,
            "tenant": tenant,
            "method": request.method,
            "body": base64.b64encode(body).decode(),
            "query": request.url.query,
            "twilio": request.headers.get("X-Twilio-Signature"),
            "meta": request.headers.get("X-Hub-Signature-256"),
            "type": request.headers.get("Content-Type"),
        }
        return Response(json.dumps(seen), media_type="application/json")

    return app


def callback(
    method: str,
    path: str,
    body: bytes | None,
    *,
    encoded: bool,
    query: str = "",
    **headers: str,
) -> dict[str, Any]:
    """An API Gateway event as a provider's callback makes it: no API key."""
    event: dict[str, Any] = api_gateway_event(method, path, "unused", **headers)
    event["headers"] = {k: v for k, v in event["headers"].items() if k != "authorization"}
    event["rawQueryString"] = query
    if body is not None:
        event["isBase64Encoded"] = encoded
        event["body"] = base64.b64encode(body).decode() if encoded else body.decode()
    return event


def seen_by_app(event: dict[str, Any]) -> dict[str, Any]:
    response = aws_lambda.asgi_handler(echo_app())(event, None)
    assert response["statusCode"] == 200
    raw = response["body"]
    if response.get("isBase64Encoded"):
        raw = base64.b64decode(raw)
    seen: dict[str, Any] = json.loads(raw)
    seen["body"] = base64.b64decode(seen["body"])
    return seen


@pytest.mark.parametrize("encoded", [True, False])
def test_a_twilio_form_post_reaches_the_app_byte_for_byte(encoded: bool) -> None:
    form = b"MessageSid=SM1&MessageStatus=delivered&To=%2B15005550006&ErrorCode="
    signature = base64.b64encode(hmac.digest(b"token", b"url" + form, "sha1")).decode()
    seen = seen_by_app(
        callback(
            "POST",
            "/v1/receipts/twilio/acme",
            form,
            encoded=encoded,
            query="attempt=1",
            **{
                "content-type": "application/x-www-form-urlencoded",
                "x-twilio-signature": signature,
            },
        )
    )
    assert seen["body"] == form
    assert (seen["provider"], seen["tenant"], seen["method"]) == ("twilio", "acme", "POST")
    assert seen["twilio"] == signature
    assert seen["query"] == "attempt=1"
    assert seen["type"] == "application/x-www-form-urlencoded"


def test_a_whatsapp_body_keeps_the_bytes_its_hmac_was_made_of() -> None:
    # Not re-serialised: spacing, key order and non-ASCII stay as Meta sent them.
    body = (
        '{"entry": [{"changes":[{"value":'
        '{"statuses":[{"id":"wamid.1","status":"read","x":"é"}]}}]}]}'
    )
    raw = body.encode()
    signature = "sha256=" + hmac.new(b"app-secret", raw, hashlib.sha256).hexdigest()
    seen = seen_by_app(
        callback(
            "POST",
            "/v1/receipts/whatsapp/acme",
            raw,
            encoded=True,
            **{"content-type": "application/json", "x-hub-signature-256": signature},
        )
    )
    assert seen["body"] == raw
    assert seen["meta"] == signature
    expected = "sha256=" + hmac.new(b"app-secret", seen["body"], hashlib.sha256).hexdigest()
    assert hmac.compare_digest(seen["meta"], expected)


def test_the_whatsapp_verification_get_keeps_its_query_string() -> None:
    query = "hub.mode=subscribe&hub.verify_token=t%26k&hub.challenge=1158201444"
    seen = seen_by_app(
        callback("GET", "/v1/receipts/whatsapp/acme", None, encoded=False, query=query)
    )
    assert (seen["method"], seen["query"], seen["body"]) == ("GET", query, b"")


def test_an_sns_notification_body_arrives_unchanged() -> None:
    body = json.dumps({"Type": "Notification", "Message": '{"eventType":"Bounce"}'}).encode()
    seen = seen_by_app(
        callback(
            "POST",
            "/v1/receipts/ses/acme",
            body,
            encoded=True,
            **{
                "content-type": "text/plain; charset=UTF-8",
                "x-amz-sns-message-type": "Notification",
            },
        )
    )
    assert seen["body"] == body
    assert seen["tenant"] == "acme"
