"""SNS message verification (adapters/receipts/sns.py) against a local HTTPS
server: a test CA and X.509 certificates made here, SNS messages signed here
with RSA (SignatureVersion 1 and 2), the certificate fetched over real TLS.

The server answers for ``sns.us-east-1.amazonaws.com`` (its certificate says
so, signed by the test CA); CertFetch connects that name to it. Everything
else (host rule, TLS and host name check, certificate, signature, topic) is
the production path.
"""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from integration_hub.adapters.receipts import ses, sns
from integration_hub.adapters.receipts.common import (
    MAX_BODY_BYTES,
    BadSignature,
    BodyTooLarge,
    MalformedReceipt,
    UntrustedSource,
)
from integration_hub.domain.receipts import DeliveryState, SuppressionReason, suppression_for

HOST = "sns.us-east-1.amazonaws.com"
CERT_URL = f"https://{HOST}/SimpleNotificationService-0000.pem"
TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-events"
NOW = datetime.now(UTC)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _cert(
    subject: str,
    key: Any,
    issuer_key: Any,
    issuer: str,
    *,
    ca: bool = False,
    dns: tuple[str, ...] = (),
    not_after: datetime | None = None,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=2))
        .not_valid_after(not_after or NOW + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if dns:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class Pki:
    ca_file: Path
    server_cert: Path
    server_key: Path
    signing_key: rsa.RSAPrivateKey
    pems: dict[str, bytes] = field(default_factory=dict)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    home = tmp_path_factory.mktemp("sns-pki")
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = _cert("Test SNS CA", ca_key, ca_key, "Test SNS CA", ca=True)
    server_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    server = _cert(HOST, server_key, ca_key, "Test SNS CA", dns=(HOST,))
    signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signing = _cert("sns.amazonaws.com", signing_key, ca_key, "Test SNS CA")
    expired = _cert(
        "sns.amazonaws.com", signing_key, ca_key, "Test SNS CA", not_after=NOW - timedelta(days=1)
    )
    ec_key = ec.generate_private_key(ec.SECP256R1())
    not_rsa = _cert("sns.amazonaws.com", ec_key, ca_key, "Test SNS CA")
    (home / "ca.pem").write_bytes(_pem(ca))
    (home / "server.pem").write_bytes(_pem(server))
    (home / "server.key").write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Pki(
        ca_file=home / "ca.pem",
        server_cert=home / "server.pem",
        server_key=home / "server.key",
        signing_key=signing_key,
        pems={
            "/SimpleNotificationService-0000.pem": _pem(signing),
            "/other-1.pem": _pem(signing),
            "/other-2.pem": _pem(signing),
            "/expired.pem": _pem(expired),
            "/ec.pem": _pem(not_rsa),
            "/garbage.pem": b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n",
        },
    )


@dataclass
class Server:
    port: int
    requests: list[str]


@pytest.fixture
async def server(pki: Pki) -> AsyncIterator[Server]:
    requests: list[str] = []

    async def serve(request: web.Request) -> web.StreamResponse:
        requests.append(request.path)
        if request.path == "/redirect.pem":
            raise web.HTTPFound(CERT_URL)
        pem = pki.pems.get(request.path)
        if pem is None:
            raise web.HTTPNotFound()
        return web.Response(body=pem, content_type="application/x-pem-file")

    app = web.Application()
    app.router.add_get("/{name}", serve)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield Server(port, requests)
    finally:
        await runner.cleanup()


@pytest.fixture
async def verifier(pki: Pki, server: Server) -> AsyncIterator[sns.SnsVerifier]:
    v = sns.SnsVerifier(
        sns.CertFetch(ca_file=str(pki.ca_file), connect_to=("127.0.0.1", server.port))
    )
    try:
        yield v
    finally:
        await v.close()


def aws_string_to_sign(message: dict[str, str]) -> bytes:
    """Written from the AWS page, independently of the module under test."""
    if message["Type"] == "Notification":
        keys = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    else:
        keys = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    return "".join(f"{k}\n{message[k]}\n" for k in keys if k in message).encode()


def signed(
    key: rsa.RSAPrivateKey, version: str = "2", cert_url: str = CERT_URL, **fields: str
) -> dict[str, str]:
    message = {
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": TOPIC,
        "Message": json.dumps({"eventType": "Delivery", "mail": {"messageId": "m1"}}),
        "Timestamp": "2026-01-01T10:00:00.000Z",
        "SignatureVersion": version,
        "SigningCertURL": cert_url,
        **fields,
    }
    # SignatureVersion 1 is SHA-1 by definition: AWS still sends it by default.
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303
    signature = key.sign(aws_string_to_sign(message), padding.PKCS1v15(), algorithm)
    message["Signature"] = base64.b64encode(signature).decode()
    return message


def body(message: dict[str, str]) -> bytes:
    return json.dumps(message).encode()


@pytest.mark.parametrize("version", ["1", "2"])
async def test_a_signed_notification_is_verified(
    verifier: sns.SnsVerifier, pki: Pki, version: str
) -> None:
    message = await verifier.verify(body(signed(pki.signing_key, version)), {TOPIC})
    assert message.type == sns.NOTIFICATION
    assert message.topic_arn == TOPIC
    assert message.timestamp == datetime(2026, 1, 1, 10, tzinfo=UTC)


async def test_a_subject_is_part_of_what_is_signed(verifier: sns.SnsVerifier, pki: Pki) -> None:
    message = signed(pki.signing_key, Subject="Amazon SES Email Event Notification")
    assert (await verifier.verify(body(message), {TOPIC})).subject is not None
    without = {k: v for k, v in message.items() if k != "Subject"}
    with pytest.raises(BadSignature):
        await verifier.verify(body(without), {TOPIC})


@pytest.mark.parametrize("kind", [sns.SUBSCRIPTION_CONFIRMATION, sns.UNSUBSCRIBE_CONFIRMATION])
async def test_confirmations_are_verified_and_give_the_url_to_visit(
    verifier: sns.SnsVerifier, pki: Pki, kind: str
) -> None:
    url = f"https://{HOST}/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token=2336412f37f"
    message = signed(
        pki.signing_key,
        "1",
        Type=kind,
        Token="2336412f37f",
        SubscribeURL=url,
        Message="You have chosen",
    )
    verified = await verifier.verify(body(message), {TOPIC})
    if kind == sns.SUBSCRIPTION_CONFIRMATION:
        assert sns.subscribe_url_to_visit(verified) == url
    else:
        with pytest.raises(MalformedReceipt):
            sns.subscribe_url_to_visit(verified)
    tampered = {**message, "Token": "another-token"}
    with pytest.raises(BadSignature):
        await verifier.verify(body(tampered), {TOPIC})


@pytest.mark.parametrize(
    "change",
    [
        {"Message": "{}"},
        {"MessageId": "another"},
        {"Timestamp": "2026-01-01T10:00:01.000Z"},
        {"Type": "SubscriptionConfirmation", "SubscribeURL": f"https://{HOST}/", "Token": "t"},
        {"SignatureVersion": "1"},  # a SHA-256 signature read as SHA-1
    ],
)
async def test_a_tampered_message_fails(
    verifier: sns.SnsVerifier, pki: Pki, change: dict[str, str]
) -> None:
    with pytest.raises(BadSignature):
        await verifier.verify(body({**signed(pki.signing_key), **change}), {TOPIC})


async def test_a_signature_by_another_key_fails(verifier: sns.SnsVerifier) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(BadSignature):
        await verifier.verify(body(signed(stranger)), {TOPIC})


@pytest.mark.parametrize("signature", ["", "not base64!", base64.b64encode(b"x" * 256).decode()])
async def test_a_garbage_signature_fails(
    verifier: sns.SnsVerifier, pki: Pki, signature: str
) -> None:
    message = {**signed(pki.signing_key), "Signature": signature}
    with pytest.raises((BadSignature, MalformedReceipt)):
        await verifier.verify(body(message), {TOPIC})


@pytest.mark.parametrize("version", ["", "3", "0"])
async def test_an_unknown_signature_version_fails(
    verifier: sns.SnsVerifier, pki: Pki, version: str
) -> None:
    with pytest.raises(BadSignature):
        await verifier.verify(
            body({**signed(pki.signing_key), "SignatureVersion": version}), {TOPIC}
        )


async def test_an_unexpected_topic_is_refused_before_any_fetch(
    verifier: sns.SnsVerifier, pki: Pki, server: Server
) -> None:
    message = signed(pki.signing_key, TopicArn="arn:aws:sns:us-east-1:999999999999:theirs")
    with pytest.raises(UntrustedSource):
        await verifier.verify(body(message), {TOPIC})
    with pytest.raises(UntrustedSource):
        await verifier.verify(body(signed(pki.signing_key)), set())
    assert server.requests == []


@pytest.mark.parametrize(
    "url",
    [
        f"http://{HOST}/SimpleNotificationService-0000.pem",
        "https://sns.us-east-1.amazonaws.com.evil.example/x.pem",
        "https://evil.example/sns.us-east-1.amazonaws.com/x.pem",
        "https://s3.amazonaws.com/x.pem",
        "https://sns.amazonaws.com/x.pem",
        f"https://attacker@{HOST}/x.pem",
        f"https://{HOST}:8443/x.pem",
        f"https://{HOST}/x.txt",
        "https://127.0.0.1/x.pem",
        "not a url",
    ],
)
async def test_a_certificate_url_off_the_sns_hosts_is_never_fetched(
    verifier: sns.SnsVerifier, pki: Pki, server: Server, url: str
) -> None:
    with pytest.raises(UntrustedSource):
        await verifier.verify(body(signed(pki.signing_key, cert_url=url)), {TOPIC})
    assert server.requests == []


def test_the_china_regions_are_sns_hosts_too() -> None:
    assert sns.check_sns_url("https://sns.cn-north-1.amazonaws.com.cn/a.pem", "u", pem=True)
    assert sns.check_sns_url("https://sns.us-gov-west-1.amazonaws.com/a.pem", "u", pem=True)


async def test_a_subscribe_url_off_the_sns_hosts_is_refused(
    verifier: sns.SnsVerifier, pki: Pki
) -> None:
    message = signed(
        pki.signing_key,
        Type=sns.SUBSCRIPTION_CONFIRMATION,
        Token="t",
        SubscribeURL="https://evil.example/?Action=ConfirmSubscription",
    )
    with pytest.raises(UntrustedSource):
        await verifier.verify(body(message), {TOPIC})


@pytest.mark.parametrize(
    "path", ["/expired.pem", "/ec.pem", "/garbage.pem", "/missing.pem", "/redirect.pem"]
)
async def test_a_certificate_we_cannot_trust_refuses_the_message(
    verifier: sns.SnsVerifier, pki: Pki, server: Server, path: str
) -> None:
    message = signed(pki.signing_key, cert_url=f"https://{HOST}{path}")
    with pytest.raises(UntrustedSource):
        await verifier.verify(body(message), {TOPIC})
    assert server.requests == [path]  # a redirect is not followed


async def test_without_the_test_ca_the_local_server_is_not_trusted(
    pki: Pki, server: Server
) -> None:
    production_trust = sns.SnsVerifier(sns.CertFetch(connect_to=("127.0.0.1", server.port)))
    try:
        with pytest.raises(UntrustedSource):
            await production_trust.verify(body(signed(pki.signing_key)), {TOPIC})
    finally:
        await production_trust.close()


async def test_a_server_whose_certificate_names_another_host_is_not_trusted(
    verifier: sns.SnsVerifier, pki: Pki
) -> None:
    url = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0000.pem"
    topic = "arn:aws:sns:eu-west-1:123456789012:ses-events"
    with pytest.raises(UntrustedSource):
        await verifier.verify(body(signed(pki.signing_key, cert_url=url, TopicArn=topic)), {topic})


async def test_certificates_are_cached_and_the_cache_is_bounded(pki: Pki, server: Server) -> None:
    small = sns.SnsVerifier(
        sns.CertFetch(ca_file=str(pki.ca_file), connect_to=("127.0.0.1", server.port), cache_size=2)
    )
    try:
        for _ in range(3):
            await small.verify(body(signed(pki.signing_key)), {TOPIC})
        assert small.fetches == 1
        for path in ("/other-1.pem", "/other-2.pem"):
            await small.verify(
                body(signed(pki.signing_key, cert_url=f"https://{HOST}{path}")), {TOPIC}
            )
        assert small.fetches == 3
        await small.verify(body(signed(pki.signing_key)), {TOPIC})  # evicted: fetched again
        assert small.fetches == 4
    finally:
        await small.close()


GARBAGE: list[bytes] = [
    b"",
    b"\x00\xff",
    b"[]",
    b'{"Type": "Notification"}',
    json.dumps({"Type": "Nope", "Message": "x"}).encode(),
    json.dumps({"Type": "Notification", "Message": 5}).encode(),
    b"{" * MAX_BODY_BYTES,
]


@pytest.mark.parametrize("garbage", GARBAGE, ids=range(len(GARBAGE)))
async def test_garbage_is_malformed_and_costs_no_fetch(
    verifier: sns.SnsVerifier, server: Server, garbage: bytes
) -> None:
    with pytest.raises(MalformedReceipt):
        await verifier.verify(garbage, {TOPIC})
    assert server.requests == []


async def test_over_a_mebibyte_is_refused_unread(verifier: sns.SnsVerifier) -> None:
    with pytest.raises(BodyTooLarge):
        await verifier.verify(b" " * (MAX_BODY_BYTES + 1), {TOPIC})


async def test_an_ses_bounce_through_sns_becomes_suppressing_receipts(
    verifier: sns.SnsVerifier, pki: Pki
) -> None:
    event = {
        "notificationType": "Bounce",
        "mail": {"messageId": "0100-ses-id", "timestamp": "2026-01-01T10:00:00Z"},
        "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": "NoEmail",
            "bouncedRecipients": [{"emailAddress": "Gone@Example.com"}],
            "timestamp": "2026-01-01T10:00:03Z",
        },
    }
    message = await verifier.verify(
        body(signed(pki.signing_key, Message=json.dumps(event))), {TOPIC}
    )
    [receipt] = ses.parse_notification("acme", message, NOW)
    assert receipt.provider_message_id == "0100-ses-id"
    assert receipt.state is DeliveryState.BOUNCED
    assert receipt.recipient == "gone@example.com"
    assert suppression_for(receipt) is SuppressionReason.HARD_BOUNCE


def test_string_to_sign_agrees_with_the_aws_description() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for message in (
        signed(key),
        signed(key, Subject="s"),
        signed(key, Type="SubscriptionConfirmation", SubscribeURL="https://x/", Token="t"),
    ):
        assert sns.string_to_sign(message) == aws_string_to_sign(message)
