"""The receipt endpoints on SQLite and PostgreSQL, signed the way each provider signs:
Twilio with the twilio package's RequestValidator over the public URL, WhatsApp
with HMAC-SHA256 over the raw bytes, SNS with a test CA and an RSA signature made
here. Tampering, wrong keys, unknown tenants, replays, reordering, unknown ids,
garbage and STOP/START keywords."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
from typing import Any
from urllib.parse import urlencode

import httpx
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from integration_hub.adapters.receipts.common import MAX_BODY_BYTES
from integration_hub.domain.routing import Channel
from integration_hub.entrypoints.tenant_admin import TenantAdmin
from providers.test_sns_receipts import HOST, TOPIC, Pki, body, signed
from receipts_api.conftest import APP_SECRET, PUBLIC_URL, TWILIO_TOKEN, VERIFY_TOKEN, Env

SMS_TO = "+15005550001"
WA_TO = "+5215512345678"
EMAIL_TO = "ana@example.com"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _sample(env: Env, name: str, labels: dict[str, str]) -> float:
    assert env.hub.metrics is not None
    value = env.hub.metrics.metrics.registry.get_sample_value(name, labels)
    return value or 0.0


# -- Twilio -----------------------------------------------------------------------------


def twilio_status(sid: str, status: str, code: str | None = None) -> dict[str, str]:
    params = {
        "MessageSid": sid,
        "SmsSid": sid,
        "AccountSid": "AC" + "0" * 32,
        "MessageStatus": status,
        "SmsStatus": status,
        "To": SMS_TO,
        "From": "+15005550006",
        "ApiVersion": "2010-04-01",
    }
    if code is not None:
        params["ErrorCode"] = code
    return params


async def post_twilio(
    env: Env,
    params: dict[str, str],
    *,
    tenant: str = "acme",
    token: str = TWILIO_TOKEN,
    tamper: dict[str, str] | None = None,
    signature: str | None = None,
) -> httpx.Response:
    url = f"{PUBLIC_URL}/v1/receipts/twilio/{tenant}"
    validator = RequestValidator(token)
    sig = validator.compute_signature(url, params) if signature is None else signature
    if signature is None:
        assert validator.validate(url, params, sig)  # the official check agrees
    sent = {**params, **(tamper or {})}
    headers = {**FORM, "X-Twilio-Signature": sig} if sig else FORM
    return await env.client.post(
        f"/v1/receipts/twilio/{tenant}", content=urlencode(sent), headers=headers
    )


async def test_a_signed_twilio_status_callback_is_recorded(env: Env) -> None:
    nid = await env.send("US", "twilio", "SM1", phone=SMS_TO)
    assert (await env.view(nid))["delivery"]["state"] == "sent"
    answer = await post_twilio(env, twilio_status("SM1", "delivered"))
    assert answer.status_code == 204, answer.text
    view = await env.view(nid)
    assert view["delivery_state"] == "delivered"
    assert view["delivery"]["state"] == "delivered"
    events = view["delivery"]["events"]
    assert [(e["provider"], e["state"], e["raw_status"]) for e in events][-1] == (
        "twilio",
        "delivered",
        "delivered",
    )
    assert _sample(env, "ihub_receipts_total", {"provider": "twilio", "state": "delivered"}) == 1
    latency = "ihub_receipt_latency_seconds_count"
    assert _sample(env, latency, {"provider": "twilio"}) == 1


async def test_replayed_and_reordered_twilio_callbacks_never_move_back(env: Env) -> None:
    nid = await env.send("US", "twilio", "SM2", phone=SMS_TO)
    for status in ("delivered", "sent", "delivered", "queued"):
        assert (await post_twilio(env, twilio_status("SM2", status))).status_code == 204
    view = await env.view(nid)
    assert view["delivery"]["state"] == "delivered"
    delivered = [e for e in view["delivery"]["events"] if e["raw_status"] == "delivered"]
    assert len(delivered) == 1
    assert _sample(env, "ihub_receipts_duplicate_total", {"provider": "twilio"}) == 1


async def test_bad_signatures_and_unknown_tenants_get_one_same_answer(env: Env) -> None:
    nid = await env.send("US", "twilio", "SM3", phone=SMS_TO)
    params = twilio_status("SM3", "undelivered", "21610")
    tampered = await post_twilio(env, params, tamper={"MessageStatus": "delivered"})
    wrong_key = await post_twilio(env, params, token="another-token")
    unknown = await post_twilio(env, params, tenant="nobody")
    not_configured = await post_twilio(env, params, tenant="globex")
    not_an_id = await post_twilio(env, params, tenant="Not_A_Tenant")
    answers = [tampered, wrong_key, unknown, not_configured, not_an_id]
    assert {a.status_code for a in answers} == {403}
    assert len({a.content for a in answers}) == 1
    assert tampered.headers["content-type"] == "application/problem+json"
    missing = await post_twilio(env, params, signature="")
    assert missing.status_code == 401
    assert missing.json()["field"] == "X-Twilio-Signature"
    assert (await env.view(nid))["delivery"]["state"] == "sent"
    assert (await env.client.get("/v1/suppressions", headers=env.headers())).json()["items"] == []
    rejected = "ihub_receipts_rejected_total"
    assert _sample(env, rejected, {"provider": "twilio", "reason": "signature"}) == 6


async def test_an_unknown_message_id_changes_nothing_and_is_counted(env: Env) -> None:
    answer = await post_twilio(env, twilio_status("SM-unknown", "delivered"))
    assert answer.status_code == 204
    assert _sample(env, "ihub_receipts_unmatched_total", {"provider": "twilio"}) == 1


async def test_a_query_string_is_part_of_the_signed_url(env: Env) -> None:
    nid = await env.send("US", "twilio", "SM4", phone=SMS_TO)
    params = twilio_status("SM4", "delivered")
    url = f"{PUBLIC_URL}/v1/receipts/twilio/acme?attempt=1"
    sig = RequestValidator(TWILIO_TOKEN).compute_signature(url, params)
    headers = {**FORM, "X-Twilio-Signature": sig}
    answer = await env.client.post(
        "/v1/receipts/twilio/acme?attempt=1", content=urlencode(params), headers=headers
    )
    assert answer.status_code == 204, answer.text
    assert (await env.view(nid))["delivery"]["state"] == "delivered"
    # The same signature without the query string is not the URL Twilio called.
    again = await env.client.post(
        "/v1/receipts/twilio/acme", content=urlencode(params), headers=headers
    )
    assert again.status_code == 403


async def test_twilio_21610_suppresses_the_recipient_and_the_next_send_is_refused(
    env: Env,
) -> None:
    await env.send("US", "twilio", "SM5", phone=SMS_TO)
    answer = await post_twilio(env, twilio_status("SM5", "undelivered", "21610"))
    assert answer.status_code == 204
    refused = await env.submit("US", phone=SMS_TO)
    assert refused.status_code == 422
    problem = refused.json()
    assert problem["type"].endswith(":suppressed")
    assert problem["field"] == "recipient.phone"
    assert problem["channel"] == "sms"
    assert problem["reason"] == "opted_out"
    assert await env.hub.queue.receive(1, visibility_timeout=30) == []


def inbound(body: str, sender: str = "+15005550009") -> dict[str, str]:
    return {
        "MessageSid": "SMinbound" + str(random.randrange(10**6)),
        "SmsStatus": "received",
        "Body": body,
        "From": sender,
        "To": "+15005550006",
        "NumMedia": "0",
        "AccountSid": "AC" + "0" * 32,
    }


async def test_stop_suppresses_the_sender_and_start_lifts_it(env: Env) -> None:
    stop = await post_twilio(env, inbound("  Stop "))
    assert stop.status_code == 200
    assert stop.headers["content-type"].startswith("text/xml")
    assert "<Response/>" in stop.text
    listed = (await env.client.get("/v1/suppressions", headers=env.headers())).json()["items"]
    assert [(s["channel"], s["address"], s["reason"], s["source"]) for s in listed] == [
        ("sms", "+15005550009", "opted_out", "inbound")
    ]
    assert (await env.submit("US", phone="+15005550009")).status_code == 422
    hello = await post_twilio(env, inbound("hello there"))
    assert hello.status_code == 200
    start = await post_twilio(env, inbound("START"))
    assert start.status_code == 200
    assert (await env.client.get("/v1/suppressions", headers=env.headers())).json()["items"] == []
    assert (await env.submit("US", phone="+15005550009")).status_code == 202


async def test_start_does_not_lift_an_operator_suppression(env: Env) -> None:
    added = await env.client.post(
        "/admin/v1/tenants/acme/suppressions",
        json={"channel": "sms", "address": "+15005550009", "note": "legal"},
        headers=env.admin(),
    )
    assert added.status_code == 201, added.text
    assert (await post_twilio(env, inbound("START"))).status_code == 200
    listed = (await env.client.get("/v1/suppressions", headers=env.headers())).json()["items"]
    assert [s["reason"] for s in listed] == ["operator"]


async def test_without_a_public_url_receipts_answer_503(env: Env) -> None:
    env.hub.settings = env.hub.settings.model_copy(update={"public_url": None})
    answer = await post_twilio(env, twilio_status("SM1", "delivered"))
    assert answer.status_code == 503
    assert answer.json()["detail"] == "receipts need IHUB_PUBLIC_URL"


# -- WhatsApp ---------------------------------------------------------------------------


def wa_payload(*statuses: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "102290129340398",
                    "changes": [
                        {
                            "field": "messages",
                            "value": {"messaging_product": "whatsapp", "statuses": list(statuses)},
                        }
                    ],
                }
            ],
        }
    ).encode()


def wa_status(wamid: str, status: str, ts: int, code: int | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": wamid,
        "status": status,
        "timestamp": str(ts),
        "recipient_id": WA_TO.lstrip("+"),
    }
    if code is not None:
        item["errors"] = [{"code": code, "title": "error"}]
    return item


def wa_sign(raw: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


async def post_wa(
    env: Env, raw: bytes, *, tenant: str = "acme", signature: str | None = None
) -> httpx.Response:
    sig = wa_sign(raw) if signature is None else signature
    headers = {"Content-Type": "application/json"}
    if sig:
        headers["X-Hub-Signature-256"] = sig
    return await env.client.post(f"/v1/receipts/whatsapp/{tenant}", content=raw, headers=headers)


async def test_the_whatsapp_handshake_echoes_the_challenge_only_for_the_token(env: Env) -> None:
    query = {
        "hub.mode": "subscribe",
        "hub.verify_token": VERIFY_TOKEN,
        "hub.challenge": "1158201444",
    }
    ok = await env.client.get("/v1/receipts/whatsapp/acme", params=query)
    assert ok.status_code == 200
    assert ok.text == "1158201444"
    wrong = await env.client.get(
        "/v1/receipts/whatsapp/acme", params={**query, "hub.verify_token": "guess"}
    )
    other = await env.client.get("/v1/receipts/whatsapp/globex", params=query)
    unknown = await env.client.get("/v1/receipts/whatsapp/nobody", params=query)
    assert {wrong.status_code, other.status_code, unknown.status_code} == {403}
    assert wrong.content == other.content == unknown.content


async def test_whatsapp_statuses_out_of_order_end_read(env: Env) -> None:
    nid = await env.send("MX", "whatsapp_cloud", "wamid.A", phone=WA_TO)
    raw = wa_payload(
        wa_status("wamid.A", "read", 1767261700), wa_status("wamid.A", "sent", 1767261600)
    )
    answer = await post_wa(env, raw)
    assert answer.status_code == 200, answer.text
    delivered = wa_payload(wa_status("wamid.A", "delivered", 1767261650))
    assert (await post_wa(env, delivered)).status_code == 200
    assert (await post_wa(env, raw)).status_code == 200  # a redelivered webhook
    view = await env.view(nid)
    assert view["delivery"]["state"] == "read"
    assert sorted(e["raw_status"] for e in view["delivery"]["events"]) == [
        "delivered",
        "read",
        "sent",
    ]


async def test_a_tampered_or_unsigned_whatsapp_body_changes_nothing(env: Env) -> None:
    nid = await env.send("MX", "whatsapp_cloud", "wamid.B", phone=WA_TO)
    raw = wa_payload(wa_status("wamid.B", "read", 1767261700))
    tampered = raw.replace(b'"read"', b'"failed"')
    bad = await post_wa(env, tampered, signature=wa_sign(raw))
    wrong_key = await post_wa(env, raw, signature=wa_sign(raw, "not-the-secret"))
    other_tenant = await post_wa(env, raw, tenant="globex")
    assert {bad.status_code, wrong_key.status_code, other_tenant.status_code} == {403}
    assert bad.content == wrong_key.content == other_tenant.content
    assert (await post_wa(env, raw, signature="")).status_code == 401
    assert (await env.view(nid))["delivery"]["state"] == "sent"


async def test_whatsapp_131026_suppresses_as_not_on_whatsapp(env: Env) -> None:
    await env.send("MX", "whatsapp_cloud", "wamid.C", phone=WA_TO)
    answer = await post_wa(env, wa_payload(wa_status("wamid.C", "failed", 1767261700, 131026)))
    assert answer.status_code == 200
    refused = await env.submit("MX", phone=WA_TO)
    assert refused.status_code == 422
    assert refused.json()["reason"] == "not_on_whatsapp"
    assert refused.json()["channel"] == "whatsapp"


# -- SES through SNS --------------------------------------------------------------------


def ses_event(kind: str, message_id: str, **block: Any) -> str:
    section = {"Bounce": "bounce", "Delivery": "delivery", "Complaint": "complaint"}[kind]
    return json.dumps(
        {
            "eventType": kind,
            "mail": {"messageId": message_id, "timestamp": "2026-01-01T10:00:00.000Z"},
            section: {"timestamp": "2026-01-01T10:00:05.000Z", **block},
        }
    )


async def post_sns(env: Env, message: dict[str, str], tenant: str = "acme") -> httpx.Response:
    return await env.client.post(
        f"/v1/receipts/ses/{tenant}",
        content=body(message),
        headers={"Content-Type": "text/plain; charset=UTF-8"},
    )


async def test_an_sns_subscription_is_confirmed_through_the_safe_fetch(env: Env, pki: Pki) -> None:
    url = f"https://{HOST}/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token=2336412f37"
    message = signed(
        pki.signing_key,
        "1",
        Type="SubscriptionConfirmation",
        Token="2336412f37",
        SubscribeURL=url,
        Message="You have chosen to subscribe",
    )
    answer = await post_sns(env, message)
    assert answer.status_code == 200, answer.text
    visited = f"Action=ConfirmSubscription&TopicArn={TOPIC}&Token=2336412f37"
    assert env.sns.confirmations == [visited]


async def test_an_ses_hard_bounce_ends_bounced_and_suppresses_the_next_send(
    env: Env, pki: Pki
) -> None:
    nid = await env.send("ES", "ses", "ses-msg-1", email=EMAIL_TO)
    event = ses_event(
        "Bounce",
        "ses-msg-1",
        bounceType="Permanent",
        bounceSubType="General",
        bouncedRecipients=[{"emailAddress": "Ana@Example.com"}],
    )
    answer = await post_sns(env, signed(pki.signing_key, "2", Message=event))
    assert answer.status_code == 200, answer.text
    view = await env.view(nid)
    assert view["delivery"]["state"] == "bounced"
    assert view["delivery"]["events"][-1]["error_code"] == "General"
    refused = await env.submit("ES", email="ANA@example.com")
    assert refused.status_code == 422
    assert refused.json()["field"] == "recipient.email"
    assert refused.json()["reason"] == "hard_bounce"


async def test_sns_from_another_topic_or_for_another_tenant_is_refused_alike(
    env: Env, pki: Pki
) -> None:
    nid = await env.send("ES", "ses", "ses-msg-2", email=EMAIL_TO)
    event = ses_event("Delivery", "ses-msg-2", recipients=[EMAIL_TO])
    good = signed(pki.signing_key, "2", Message=event)
    other_topic = signed(
        pki.signing_key, "2", Message=event, TopicArn="arn:aws:sns:us-east-1:999999999999:evil"
    )
    tampered = {**good, "Message": ses_event("Delivery", "ses-msg-other", recipients=[])}
    answers = [
        await post_sns(env, other_topic),
        await post_sns(env, tampered),
        await post_sns(env, good, tenant="globex"),
        await post_sns(env, good, tenant="nobody"),
    ]
    assert {a.status_code for a in answers} == {403}
    assert len({a.content for a in answers}) == 1
    assert (await env.view(nid))["delivery"]["state"] == "sent"
    assert (await post_sns(env, good)).status_code == 200
    assert (await env.view(nid))["delivery"]["state"] == "delivered"


# -- garbage ----------------------------------------------------------------------------


async def test_a_body_over_1_mib_is_413_on_every_endpoint(env: Env) -> None:
    garbage = os.urandom(MAX_BODY_BYTES + 1)
    for path in ("twilio", "whatsapp", "ses"):
        answer = await env.client.post(f"/v1/receipts/{path}/acme", content=garbage)
        assert answer.status_code == 413, (path, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"


async def test_garbage_never_gets_a_500(env: Env) -> None:
    rng = random.Random(15)
    bodies = [
        b"",
        b"{",
        b"[]",
        b"null",
        b'{"Type": "Notification"}',
        b'{"object": "whatsapp_business_account", "entry": [{"changes": [1]}]}',
        b"MessageSid=&MessageStatus=%ff%fe",
        b"a=b&&c",
        "\u0000\ud7ff".encode("utf-8", "surrogatepass"),
        os.urandom(MAX_BODY_BYTES - 10),
        *(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400))) for _ in range(30)),
    ]
    signatures = [
        {},
        {"X-Twilio-Signature": "AAAA"},
        {"X-Hub-Signature-256": "sha256=zz"},
        {"X-Hub-Signature-256": "sha1=00"},
    ]
    for raw in bodies:
        for headers in signatures:
            for path in ("twilio/acme", "whatsapp/acme", "ses/acme", "ses/nobody"):
                answer = await env.client.post(f"/v1/receipts/{path}", content=raw, headers=headers)
                assert answer.status_code in {400, 401, 403}, (path, raw[:40], answer.text)
                assert answer.headers["content-type"] == "application/problem+json"


async def test_stop_through_twilio_whatsapp_suppresses_on_whatsapp(env: Env) -> None:
    assert (await post_twilio(env, inbound("STOP", "whatsapp:+15005550010"))).status_code == 200
    listed = (await env.client.get("/v1/suppressions", headers=env.headers())).json()["items"]
    assert [(s["channel"], s["address"]) for s in listed] == [("whatsapp", "+15005550010")]


# -- Twilio, WhatsApp sender (provider twilio_whatsapp) -----------------------------

TWA_TOKEN = "twilio-whatsapp-auth-token-of-acme"


async def use_twilio_whatsapp(env: Env) -> None:
    """Acme's WhatsApp goes through Twilio, on an account of its own."""
    admin = TenantAdmin(env.hub)
    await admin.set_channel_provider("acme", Channel.WHATSAPP, "twilio_whatsapp")
    await admin.set_credentials(
        "acme",
        "twilio_whatsapp",
        {"account_sid": "AC" + "7" * 32, "auth_token": TWA_TOKEN, "from_number": "+14155238886"},
    )


async def post_twilio_whatsapp(
    env: Env, params: dict[str, str], *, token: str = TWA_TOKEN, path: str = "twilio_whatsapp"
) -> httpx.Response:
    url = f"{PUBLIC_URL}/v1/receipts/{path}/acme"
    headers = {**FORM, "X-Twilio-Signature": RequestValidator(token).compute_signature(url, params)}
    return await env.client.post(
        f"/v1/receipts/{path}/acme", content=urlencode(params), headers=headers
    )


def twilio_whatsapp_status(sid: str, status: str, code: str | None = None) -> dict[str, str]:
    params = {
        **twilio_status(sid, status, code),
        "To": f"whatsapp:{WA_TO}",
        "From": "whatsapp:+14155238886",
    }
    params["AccountSid"] = "AC" + "7" * 32
    return params


async def test_a_twilio_whatsapp_callback_is_recorded_for_the_notification_it_sent(
    env: Env,
) -> None:
    await use_twilio_whatsapp(env)
    nid = await env.send("MX", "twilio_whatsapp", "SMwa1", phone=WA_TO)

    for status in ("sent", "read", "delivered"):
        answer = await post_twilio_whatsapp(env, twilio_whatsapp_status("SMwa1", status))
        assert answer.status_code == 204, answer.text

    view = await env.view(nid)
    assert view["delivery"]["state"] == "read"
    events = view["delivery"]["events"]
    assert {e["provider"] for e in events} == {"twilio_whatsapp"}
    assert _sample(env, "ihub_receipts_total", {"provider": "twilio", "state": "read"}) == 1


async def test_a_twilio_whatsapp_callback_signed_with_another_token_is_refused(
    env: Env,
) -> None:
    await use_twilio_whatsapp(env)
    nid = await env.send("MX", "twilio_whatsapp", "SMwa2", phone=WA_TO)
    params = twilio_whatsapp_status("SMwa2", "delivered")

    # The SMS account's token does not sign for the WhatsApp account's endpoint.
    refused = await post_twilio_whatsapp(env, params, token=TWILIO_TOKEN)
    # Nor does the SMS endpoint find a message sent through twilio_whatsapp.
    unmatched = await post_twilio_whatsapp(env, params, token=TWILIO_TOKEN, path="twilio")

    assert refused.status_code == 403
    assert unmatched.status_code == 204
    assert (await env.view(nid))["delivery"]["state"] == "sent"


async def test_without_twilio_whatsapp_settings_its_endpoint_refuses_alike(env: Env) -> None:
    answer = await post_twilio_whatsapp(env, twilio_whatsapp_status("SMwa3", "delivered"))

    assert answer.status_code == 403
    assert answer.json()["type"].endswith("receipt-rejected")
