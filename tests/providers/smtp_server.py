"""A real local SMTP server for tests: ``aiosmtpd``'s threaded Controller.

``SmtpServer`` records every message (and the session it came on), counts
TCP connections, and can be told to refuse recipients or data with a given
reply. ``self_signed_certificate`` makes a certificate for 127.0.0.1 and
localhost, generated at test time with ``cryptography``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .fake_http import unused_port


@dataclass(frozen=True, slots=True)
class Certificate:
    """PEM files of a self-signed server certificate."""

    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        """A server-side TLS context with this certificate."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


def self_signed_certificate(directory: Path) -> Certificate:
    """A certificate valid for localhost and 127.0.0.1, written into ``directory``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Certificate(cert_path, key_path)


@dataclass(frozen=True, slots=True)
class ReceivedMail:
    """One message as the server accepted it."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    peer: Any
    tls: bool
    authenticated: bool


@dataclass
class RecordingHandler:
    """aiosmtpd handler: records messages, or answers with a scripted reply."""

    messages: list[ReceivedMail] = field(default_factory=list)
    rcpt_reply: str | None = None
    data_reply: str | None = None

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if self.rcpt_reply is not None:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_reply is not None:
            return self.data_reply
        parsed = message_from_bytes(envelope.original_content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(
            ReceivedMail(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                message=parsed,
                peer=session.peer,
                # session.ssl is only set after STARTTLS; implicit TLS shows on the transport.
                tls=server.transport.get_extra_info("ssl_object") is not None,
                authenticated=bool(session.authenticated),
            )
        )
        return "250 Message accepted for delivery"


class CountingController(Controller):
    """A Controller that counts the SMTP connections it served."""

    connections = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.protocols: list[Any] = []

    def factory(self) -> Any:
        """One SMTP protocol per connection."""
        self.connections += 1
        protocol = super().factory()  # type: ignore[no-untyped-call]
        self.protocols.append(protocol)
        return protocol

    def stop(self, no_assert: bool = False) -> None:
        """Close the connections clients still keep open (a pooled client in another
        process never says QUIT), then stop: no socket outlives the server."""

        def hang_up() -> None:
            for protocol in self.protocols:
                transport = getattr(protocol, "transport", None)
                if transport is not None and not transport.is_closing():
                    transport.abort()

        if self.loop.is_running():
            self.loop.call_soon_threadsafe(hang_up)
        super().stop(no_assert=no_assert)


class SmtpServer:
    """A started aiosmtpd server on 127.0.0.1 and a free port."""

    def __init__(
        self,
        *,
        certificate: Certificate | None = None,
        implicit_tls: bool = False,
        users: dict[str, str] | None = None,
        idle_timeout: float = 300.0,
    ) -> None:
        self.handler = RecordingHandler()
        self.users = dict(users or {})
        kwargs: dict[str, Any] = {
            "timeout": idle_timeout,
            "hostname": "127.0.0.1",
            "port": unused_port(),
        }
        if certificate is not None and implicit_tls:
            kwargs["ssl_context"] = certificate.server_context()
        elif certificate is not None:
            kwargs["tls_context"] = certificate.server_context()
            kwargs["require_starttls"] = True
        if self.users:
            kwargs.update(
                authenticator=self._authenticate, auth_required=True, auth_require_tls=True
            )
        self.controller = CountingController(self.handler, **kwargs)

    @property
    def port(self) -> int:
        """The port it listens on."""
        port: int = self.controller.port
        return port

    @property
    def connections(self) -> int:
        """Connections served since ``start``."""
        return self.controller.connections

    @property
    def messages(self) -> list[ReceivedMail]:
        """Messages accepted so far."""
        return self.handler.messages

    def start(self) -> None:
        """Start serving; the Controller's own readiness probe is not counted."""
        self.controller.start()
        self.controller.connections = 0

    def stop(self) -> None:
        """Stop serving."""
        self.controller.stop()

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user, password = auth_data.login.decode(), auth_data.password.decode()
        # handled=False lets aiosmtpd answer a failure with its standard 535.
        return AuthResult(
            success=user in self.users and self.users[user] == password, handled=False
        )
