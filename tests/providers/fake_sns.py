"""A local SNS topic that SES publishes events to, delivering them to an HTTPS subscriber.

SES (moto, in these tests) accepts a message; the real SES then publishes
``Delivery``, ``Bounce``, ``Complaint``... events to an SNS topic, and SNS
posts each, signed, to the subscribed endpoint. This fake does the SNS part
as AWS documents it: a ``Notification`` whose ``Message`` is the SES event
JSON, signed (RSA PKCS#1 v1.5, SHA-1 for ``SignatureVersion`` 1, SHA-256
for 2) with the key of a real X.509 certificate that it serves itself over
HTTPS as ``sns.<region>.amazonaws.com``, under a test CA it makes::

    async with FakeSns(workdir) as sns:
        # the hub: IHUB_SNS_TEST_CA_FILE=sns.ca_file, IHUB_SNS_TEST_CONNECT_TO=sns.connect_to
        sns.endpoint = f"{hub}/v1/receipts/ses/acme"
        await sns.confirm_subscription()              # SubscriptionConfirmation; the hub GETs
        sns.script(Step("Delivery"))                  # the next message SES accepted
        await sns.watch_moto(moto_url, report=False)  # pass over what was sent before
        await sns.watch_moto(moto_url)                # picks up what moto's SES sent
        await sns.flush()                             # with hold = True

A step's status is the SES event type; its ``error_code`` is the detail:
the bounce type for ``Bounce`` (``Permanent`` unless given), the feedback
type for ``Complaint``, the reason for ``Reject``, the delay type for
``DeliveryDelay``.
"""

from __future__ import annotations

import base64
import json
import ssl
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from .fake_callbacks import Pending, Reporter, SentCallback

CERT_PATH = "/SimpleNotificationService-fakesnscert0001.pem"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: str,
    key: rsa.RSAPrivateKey,
    issuer_key: rsa.RSAPrivateKey,
    *,
    ca: bool = False,
    dns: tuple[str, ...] = (),
) -> x509.Certificate:
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name("Fake SNS test CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if dns:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def string_to_sign(message: dict[str, str]) -> bytes:
    """What SNS signs, as AWS documents it (independent of the hub's own code)."""
    if message["Type"] == "Notification":
        keys = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    else:
        keys = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    return "".join(f"{k}\n{message[k]}\n" for k in keys if k in message).encode()


def _stamp(when: datetime | None = None) -> str:
    moment = when or datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def ses_event(
    kind: str, message_id: str, recipient: str, detail: str | None = None, source: str = ""
) -> dict[str, Any]:
    """An SES event of ``kind`` about ``message_id`` to ``recipient``, as SES publishes it."""
    now = _stamp()
    mail = {
        "timestamp": now,
        "source": source or "notify@example.com",
        "sourceArn": "arn:aws:ses:eu-west-1:123456789012:identity/example.com",
        "sendingAccountId": "123456789012",
        "messageId": message_id,
        "destination": [recipient],
    }
    event: dict[str, Any] = {"eventType": kind, "mail": mail}
    if kind == "Delivery":
        event["delivery"] = {
            "timestamp": now,
            "processingTimeMillis": 546,
            "recipients": [recipient],
            "smtpResponse": "250 2.6.0 Message received",
            "reportingMTA": "a8-70.smtp-out.amazonses.com",
        }
    elif kind == "Bounce":
        bounce_type = detail or "Permanent"
        event["bounce"] = {
            "bounceType": bounce_type,
            "bounceSubType": "General",
            "bouncedRecipients": [
                {
                    "emailAddress": recipient,
                    "action": "failed",
                    "status": "5.1.1",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                }
            ],
            "timestamp": now,
            "feedbackId": uuid.uuid4().hex,
            "reportingMTA": "dsn; a8-70.smtp-out.amazonses.com",
        }
    elif kind == "Complaint":
        event["complaint"] = {
            "complainedRecipients": [{"emailAddress": recipient}],
            "timestamp": now,
            "feedbackId": uuid.uuid4().hex,
            "complaintFeedbackType": detail or "abuse",
        }
    elif kind == "Reject":
        event["reject"] = {"reason": detail or "Bad content"}
    elif kind == "DeliveryDelay":
        event["deliveryDelay"] = {
            "timestamp": now,
            "delayType": detail or "TransientCommunicationFailure",
            "expirationTime": _stamp(datetime.now(UTC) + timedelta(hours=12)),
            "delayedRecipients": [{"emailAddress": recipient, "status": "4.4.1"}],
        }
    else:
        raise ValueError(f"not an SES event type this fake publishes: {kind}")
    return event


class FakeSns(Reporter):
    """One SNS topic with one HTTPS subscriber (``endpoint``), and its signing certificate."""

    def __init__(
        self,
        workdir: Path,
        *,
        region: str = "eu-west-1",
        topic_arn: str | None = None,
        signature_version: str = "1",
    ) -> None:
        super().__init__()
        self.region = region
        self.host = f"sns.{region}.amazonaws.com"
        self.topic_arn = topic_arn or f"arn:aws:sns:{region}:123456789012:ses-receipts"
        self.signature_version = signature_version
        self.endpoint: str | None = None
        self.ca_file = workdir / "fake-sns-ca.pem"
        self.confirmations: list[dict[str, str]] = []
        self.certificate_fetches = 0
        self.port = 0
        self._seen: set[str] = set()
        self._sent: dict[tuple[str, str, str | None], dict[str, str]] = {}
        self._runner: web.AppRunner | None = None
        ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ca = _certificate("Fake SNS test CA", ca_key, ca_key, ca=True)
        server_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        server = _certificate(self.host, server_key, ca_key, dns=(self.host,))
        self.signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.signing_pem = _pem(_certificate("sns.amazonaws.com", self.signing_key, ca_key))
        self.ca_file.write_bytes(_pem(ca))
        self._server_cert = workdir / "fake-sns-server.pem"
        self._server_key = workdir / "fake-sns-server.key"
        self._server_cert.write_bytes(_pem(server))
        self._server_key.write_bytes(
            server_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    @property
    def cert_url(self) -> str:
        """The ``SigningCertURL`` of every message: https on the SNS host."""
        return f"https://{self.host}{CERT_PATH}"

    @property
    def connect_to(self) -> str:
        """``host:port`` the hub connects SNS host names to (IHUB_SNS_TEST_CONNECT_TO)."""
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Serve the signing certificate and the confirmation URL over HTTPS."""
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._serve)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self._server_cert, self._server_key)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        """Stop publishing and serving."""
        await self.close_reporter()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        if request.path == CERT_PATH:
            self.certificate_fetches += 1
            return web.Response(body=self.signing_pem, content_type="application/x-pem-file")
        if request.query.get("Action") == "ConfirmSubscription":
            self.confirmations.append(dict(request.query))
            arn = f"{self.topic_arn}:{uuid.uuid4()}"
            return web.Response(
                text="<ConfirmSubscriptionResponse><ConfirmSubscriptionResult>"
                f"<SubscriptionArn>{arn}</SubscriptionArn>"
                "</ConfirmSubscriptionResult></ConfirmSubscriptionResponse>",
                content_type="text/xml",
            )
        raise web.HTTPNotFound()

    def sign(self, message: dict[str, str]) -> dict[str, str]:
        """``message`` with SignatureVersion, SigningCertURL and Signature added."""
        signed = {
            **message,
            "SignatureVersion": self.signature_version,
            "SigningCertURL": self.cert_url,
        }
        # SignatureVersion 1 is SHA-1 by AWS's definition (still its default).
        algorithm = hashes.SHA1() if self.signature_version == "1" else hashes.SHA256()  # noqa: S303
        signature = self.signing_key.sign(string_to_sign(signed), padding.PKCS1v15(), algorithm)
        signed["Signature"] = base64.b64encode(signature).decode()
        return signed

    def notification(self, event: dict[str, Any]) -> dict[str, str]:
        """A signed ``Notification`` carrying ``event``."""
        return self.sign(
            {
                "Type": "Notification",
                "MessageId": str(uuid.uuid4()),
                "TopicArn": self.topic_arn,
                "Message": json.dumps(event),
                "Timestamp": _stamp(),
                "UnsubscribeURL": f"https://{self.host}/?Action=Unsubscribe"
                f"&SubscriptionArn={self.topic_arn}:0",
            }
        )

    def _headers(self, message: dict[str, str]) -> dict[str, str]:
        return {
            # SNS posts JSON as text/plain, as AWS documents.
            "Content-Type": "text/plain; charset=UTF-8",
            "x-amz-sns-message-type": message["Type"],
            "x-amz-sns-message-id": message["MessageId"],
            "x-amz-sns-topic-arn": self.topic_arn,
            "User-Agent": "Amazon Simple Notification Service Agent",
        }

    async def confirm_subscription(self) -> SentCallback:
        """Post a signed SubscriptionConfirmation to ``endpoint`` (the hub should GET its URL)."""
        assert self.endpoint is not None, "set endpoint first"
        token = uuid.uuid4().hex * 2
        query = urlencode(
            {"Action": "ConfirmSubscription", "TopicArn": self.topic_arn, "Token": token}
        )
        message = self.sign(
            {
                "Type": "SubscriptionConfirmation",
                "MessageId": str(uuid.uuid4()),
                "Token": token,
                "TopicArn": self.topic_arn,
                "Message": f"You have chosen to subscribe to the topic {self.topic_arn}.",
                "SubscribeURL": f"https://{self.host}/?{query}",
                "Timestamp": _stamp(),
            }
        )
        return await self.post(self.endpoint, json.dumps(message).encode(), self._headers(message))

    def accepted(self, message_id: str, recipient: str) -> None:
        """SES accepted ``message_id`` for ``recipient``: publish the next script's events."""
        assert self.endpoint is not None, "set endpoint first"
        self._seen.add(message_id)
        url = self.endpoint
        self.report([Pending(message_id, recipient, step, url) for step in self.next_steps()])

    async def watch_moto(self, moto_url: str, *, report: bool = True) -> int:
        """Take every message moto's SES sent since the last look as accepted: how many.

        moto's state is per process, shared by every moto server in it: look
        once with ``report=False`` first to pass over what other tests sent.
        """
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{moto_url}/moto-api/data.json") as resp,
        ):
            data = await resp.json(content_type=None)
        found = 0
        for message in data.get("ses", {}).get("Message", []):
            if message["id"] in self._seen:
                continue
            for recipient in message.get("destinations", {}).get("ToAddresses", []):
                if report:
                    self.accepted(message["id"], recipient)
            self._seen.add(message["id"])
            found += 1
        return found

    def request_for(self, item: Pending) -> tuple[bytes, dict[str, str]]:
        """The SNS notification of the SES event for ``item``.

        A step repeated for the same message is the same event delivered
        again (SNS retries with the same message): the very same signed
        notification, so the hub sees a duplicate, not a new event.
        """
        key = (item.message_id, item.step.status, item.step.error_code)
        message = self._sent.get(key)
        if message is None:
            detail = item.step.error_code
            event = ses_event(item.step.status, item.message_id, item.recipient, detail)
            message = self._sent[key] = self.notification(event)
        return json.dumps(message).encode(), self._headers(message)
