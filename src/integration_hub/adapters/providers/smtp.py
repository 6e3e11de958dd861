"""Email over SMTP with ``aiosmtplib``: a small pool of kept-open connections.

Each message carries a ``Message-ID`` derived from the notification id, the
same on every retry, so a receiving system can drop a duplicate that slipped
through the crash window.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import ssl
from email.message import EmailMessage
from typing import Any, Literal, Self

import aiosmtplib
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from integration_hub.adapters.providers import guard
from integration_hub.adapters.providers.http import redact, tenant_text
from integration_hub.domain.delivery import (
    Delivered,
    DeliveryResult,
    OutboundMessage,
    PermanentFailure,
    ProviderCheck,
    TransientFailure,
)
from integration_hub.domain.outbound import OutboundPolicy, OutboundRefused

log = logging.getLogger(__name__)

DEFAULT_PORTS = {"tls": 465, "starttls": 587, "none": 25}
# 552 on MAIL FROM is "message size exceeds fixed maximum": the message, not the sender.
SIZE_EXCEEDED = 552
CLOSE_WAIT_SECONDS = 1.0
# Room for the exception's name and a multi-line reply, joined on one line.
SMTP_TEXT_CHARS = 400


class TlsSettingsError(Exception):
    """The TLS settings (CA file) cannot be loaded."""


class SmtpSettings(BaseModel):
    """An SMTP relay, how to secure and authenticate to it, and the sender."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str
    port: int | None = Field(default=None, description="465 for tls, 587 for starttls, else 25")
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    from_address: str
    from_name: str | None = None
    reply_to: str | None = None
    verify_tls: bool = True
    ca_file: str | None = Field(default=None, description="PEM bundle to verify the server")
    timeout: float = Field(default=15.0, gt=0)
    pool_size: int = Field(default=2, ge=1)
    local_hostname: str | None = Field(default=None, description="name sent in EHLO")
    message_id_domain: str | None = Field(
        default=None, description="right-hand side of Message-ID; the sender's domain if unset"
    )

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if "@" not in self.from_address:
            raise ValueError("from_address must be an email address")
        return self

    def resolved_port(self) -> int:
        """The configured port, or the usual one for ``security``."""
        return self.port if self.port is not None else DEFAULT_PORTS[self.security]

    def message_id(self, notification_id: str) -> str:
        """The Message-ID for a notification: the same for every attempt."""
        domain = self.message_id_domain or self.from_address.rpartition("@")[2]
        return f"<{notification_id}@{domain}>"


def build_email(settings: SmtpSettings, message: OutboundMessage) -> EmailMessage:
    """A text (plus HTML, if ``metadata.email.html`` is given) message; ValueError if unsafe."""
    mail = EmailMessage()
    sender = settings.from_address
    mail["From"] = (
        email.utils.formataddr((settings.from_name, sender)) if settings.from_name else sender
    )
    mail["To"] = message.recipient.email or ""
    # The email policy refuses CR/LF in header values, so no header injection.
    mail["Subject"] = message.subject or ""
    if settings.reply_to:
        mail["Reply-To"] = settings.reply_to
    mail["Message-ID"] = settings.message_id(message.notification_id)
    mail["Date"] = email.utils.formatdate(usegmt=True)
    mail.set_content(message.body)
    options = message.metadata.get("email")
    html = options.get("html") if isinstance(options, dict) else None
    if isinstance(html, str) and html:
        mail.add_alternative(html, subtype="html")
    return mail


class SmtpProvider:
    """Sends through one SMTP relay, reusing up to ``pool_size`` connections."""

    name: str = "smtp"

    def __init__(
        self,
        settings: SmtpSettings,
        *,
        tls_context: ssl.SSLContext | None = None,
        outbound: OutboundPolicy | None = None,
    ) -> None:
        self.settings = settings
        self._outbound = outbound or OutboundPolicy()
        self._refused: OutboundRefused | None = None
        try:
            self._outbound.check_host(settings.host)
        except OutboundRefused as exc:
            self._refused = exc
        self._tls_context = tls_context
        self._idle: list[aiosmtplib.SMTP] = []
        self._slots = asyncio.Semaphore(settings.pool_size)
        self._closed = False
        self._closing: list[Any] = []  # sockets of dropped connections, not yet shut

    def __repr__(self) -> str:
        return f"SmtpProvider(host={self.settings.host!r}, port={self.settings.resolved_port()})"

    def _secrets(self) -> tuple[str, ...]:
        password = self.settings.password
        return (password.get_secret_value(),) if password is not None else ()

    async def send(self, message: OutboundMessage) -> DeliveryResult:
        """Deliver one email; classify SMTP replies and connection problems."""
        if not message.recipient.email:
            return PermanentFailure("invalid_recipient", "smtp: the recipient has no email")
        try:
            mail = build_email(self.settings, message)
        except ValueError as exc:
            # The tenant reads the attempt's message, and the email library's
            # text may quote the header or address it refused: the type only
            # there, the text for operators (the log chain redacts recipients).
            log.warning("smtp: cannot build the email of %s: %s", message.notification_id, exc)
            return PermanentFailure(
                "invalid_message",
                f"smtp: the message cannot be built safely ({type(exc).__name__});"
                " a header or address is malformed (a line break in the subject?)",
            )
        async with self._slots:
            try:
                return await self._send_pooled(mail, message.recipient.email)
            except (aiosmtplib.SMTPException, TlsSettingsError, OSError, ValueError) as exc:
                return classify(exc, self._secrets())

    async def check(self) -> ProviderCheck:
        """Connect, secure, log in and NOOP: the relay accepts us, nothing is sent."""
        settings = self.settings
        try:
            async with self._slots:
                client = await self._connect()
                try:
                    await client.noop()
                except BaseException:
                    self._drop(client)
                    raise
                self._give_back(client, keep=True)
        except (aiosmtplib.SMTPException, TlsSettingsError, OSError, ValueError) as exc:
            return ProviderCheck.failed(classify(exc, self._secrets()))
        auth = "logged in" if settings.username else "no login"
        return ProviderCheck(
            True,
            f"{settings.host}:{settings.resolved_port()} {settings.security}, {auth}, NOOP ok",
        )

    async def _send_pooled(self, mail: EmailMessage, recipient: str) -> DeliveryResult:
        # A kept connection may have been dropped by the server while idle. That
        # shows only when we use it, on MAIL FROM, before anything was sent, so
        # try once more on a fresh connection. (Should the drop come after DATA,
        # the fixed Message-ID lets the receiver discard the duplicate.)
        while True:
            client = self._idle.pop() if self._idle else None
            reused = client is not None and client.is_connected
            if client is None or not reused:
                client = await self._connect()
            try:
                await client.send_message(
                    mail, sender=self.settings.from_address, recipients=[recipient]
                )
            except aiosmtplib.SMTPServerDisconnected:
                self._drop(client)
                if reused:
                    continue
                raise
            except aiosmtplib.SMTPResponseException as exc:
                # After a refused envelope aiosmtplib has sent RSET: the
                # connection is fine unless the server said 421 (closing).
                self._give_back(client, keep=exc.code != 421)
                raise
            except aiosmtplib.SMTPRecipientsRefused:
                self._give_back(client, keep=True)
                raise
            except BaseException:
                self._drop(client)
                raise
            self._give_back(client, keep=True)
            return Delivered(str(mail["Message-ID"]))

    def _context(self) -> ssl.SSLContext:
        if self._tls_context is None:
            try:
                context = ssl.create_default_context(cafile=self.settings.ca_file)
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                raise TlsSettingsError(f"cannot load ca_file: {exc}") from exc
            if not self.settings.verify_tls:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            # Built once: loading CA bundles is slow, and the context is reusable.
            self._tls_context = context
        return self._tls_context

    async def _connect(self) -> aiosmtplib.SMTP:
        settings = self.settings
        if self._refused is not None:
            raise guard.OutboundBlocked(self._refused)
        tls_context = self._context() if settings.security != "none" else None
        # Resolved and checked here, then connected to the checked address: the
        # name is not resolved again (no DNS rebinding in between), while TLS
        # still verifies the certificate against the configured host name.
        sock = await guard.connect_checked(
            self._outbound, settings.host, settings.resolved_port(), settings.timeout
        )
        client = aiosmtplib.SMTP(
            hostname=settings.host,
            sock=sock,
            local_hostname=settings.local_hostname,
            timeout=settings.timeout,
            use_tls=settings.security == "tls",
            # True insists on STARTTLS (no silent plain-text fallback); False never tries.
            start_tls=settings.security == "starttls",
            tls_context=tls_context,
        )
        try:
            await client.connect()
            # Logging in ourselves rather than inside connect(): a refused login
            # then leaves the connection to us, so _drop can shut it at once.
            if settings.username is not None and settings.password is not None:
                await client.login(settings.username, settings.password.get_secret_value())
        except BaseException:
            if client.transport is None:
                sock.close()  # not handed over to a transport yet
            self._drop(client)
            raise
        return client

    def _give_back(self, client: aiosmtplib.SMTP, *, keep: bool) -> None:
        if keep and not self._closed and client.is_connected:
            self._idle.append(client)
        else:
            self._drop(client)

    def _drop(self, client: aiosmtplib.SMTP) -> None:
        """Drop a connection now: after an error there is no graceful goodbye to wait for."""
        transport = client.transport
        # Forget sockets that finished closing, so a long-lived worker keeps none.
        self._closing = [s for s in self._closing if s is not None and s.fileno() != -1]
        if transport is not None:
            self._closing.append(transport.get_extra_info("socket"))
        # Aborting skips the TLS close_notify exchange, which a stuck server would
        # never complete, leaving the socket open until that times out.
        if isinstance(transport, asyncio.WriteTransport) and not transport.is_closing():
            transport.abort()
        client.close()

    async def close(self) -> None:
        """Say QUIT on every idle connection and wait (briefly) for the sockets to shut."""
        self._closed = True
        idle, self._idle = self._idle, []
        for client in idle:
            if client.transport is not None:
                self._closing.append(client.transport.get_extra_info("socket"))
            try:
                await client.quit(timeout=min(self.settings.timeout, 5.0))
            except (aiosmtplib.SMTPException, OSError):
                self._drop(client)
        # Closing a transport (a TLS one above all) finishes on later loop
        # iterations; waiting here means a caller that stops the loop next
        # leaves no socket behind.
        closing, self._closing = self._closing, []
        deadline = asyncio.get_running_loop().time() + CLOSE_WAIT_SECONDS
        while any(s is not None and s.fileno() != -1 for s in closing):
            if asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.01)


def classify(exc: BaseException, secrets: tuple[str, ...] = ()) -> DeliveryResult:
    """Translate an aiosmtplib (or socket, or TLS) error into a delivery result."""
    refused = guard.refusal_of(exc)
    if refused is not None:
        return guard.refused_failure("smtp", refused)
    # The server's reply is its documented answer; bounded and sanitised all
    # the same, since tenants read it.
    text = tenant_text(f"smtp: {type(exc).__name__}: {exc}", secrets, limit=SMTP_TEXT_CHARS)
    if isinstance(exc, TlsSettingsError):
        return PermanentFailure("tls_settings", text, configuration=True)
    tls_error = _tls_cause(exc)
    if isinstance(tls_error, ssl.SSLEOFError | ssl.SSLZeroReturnError | ssl.SSLSyscallError):
        # The connection went away mid-TLS: a network problem, not a setting.
        return TransientFailure("connection_error", text)
    if tls_error is not None:
        # Certificate not trusted, or no common protocol: an operator must fix it.
        detail = redact(f"smtp: TLS failed: {tls_error}", secrets)
        return PermanentFailure("tls_error", detail, configuration=True)
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [refused.code for refused in exc.recipients]
        detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
        message = tenant_text(f"smtp: recipient refused: {detail}", secrets, limit=SMTP_TEXT_CHARS)
        if any(400 <= code < 500 for code in codes):
            # Greylisting and full mailboxes answer 4xx: try again later.
            return TransientFailure("recipient_deferred", message, code=str(codes[0]))
        return PermanentFailure("recipient_rejected", message, code=str(codes[0]))
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _classify_reply(exc, text)
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return TransientFailure("timeout", text)
    if isinstance(exc, aiosmtplib.SMTPConnectError | aiosmtplib.SMTPServerDisconnected):
        return TransientFailure("connection_error", text)
    if isinstance(exc, aiosmtplib.SMTPNotSupported) and "SMTPUTF8" in str(exc):
        # An internationalised address this relay cannot carry: this recipient only.
        return PermanentFailure("recipient_unsupported", text)
    if isinstance(exc, aiosmtplib.SMTPException):
        # What is left is the relay lacking STARTTLS or AUTH: our settings are wrong.
        return PermanentFailure("smtp_unsupported", text, configuration=True)
    if isinstance(exc, ValueError):
        return PermanentFailure("invalid_address", text)
    return TransientFailure("connection_error", text)


def _classify_reply(exc: aiosmtplib.SMTPResponseException, text: str) -> DeliveryResult:
    code = exc.code
    code_text = str(code)
    if 400 <= code < 500:
        # 421 closing, 450/451/452 try later, 454 temporary auth failure.
        return TransientFailure("smtp_deferred", text, code=code_text)
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return PermanentFailure("authentication", text, code=code_text, configuration=True)
    if isinstance(exc, aiosmtplib.SMTPSenderRefused) and code != SIZE_EXCEEDED:
        return PermanentFailure("sender_rejected", text, code=code_text, configuration=True)
    if isinstance(exc, aiosmtplib.SMTPConnectResponseError | aiosmtplib.SMTPHeloError):
        return PermanentFailure("server_refused", text, code=code_text, configuration=True)
    if isinstance(exc, aiosmtplib.SMTPRecipientRefused):
        return PermanentFailure("recipient_rejected", text, code=code_text)
    if isinstance(exc, aiosmtplib.SMTPDataError | aiosmtplib.SMTPSenderRefused):
        return PermanentFailure("message_rejected", text, code=code_text)
    if 500 <= code < 600:
        return PermanentFailure("smtp_rejected", text, code=code_text)
    return TransientFailure("smtp_unexpected_reply", text, code=code_text)


def _tls_cause(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error behind ``exc`` (aiosmtplib wraps some in SMTPConnectError)."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLError):
            return seen
        # Only explicit wrapping (raise ... from): an error merely raised while
        # handling a TLS error is not caused by it.
        seen = seen.__cause__
    return None
