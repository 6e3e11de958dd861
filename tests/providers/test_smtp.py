"""SmtpProvider against a real aiosmtpd server: plain, STARTTLS + AUTH, implicit TLS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest

from integration_hub.adapters.providers import registry
from integration_hub.adapters.providers.smtp import SmtpProvider, SmtpSettings, classify
from integration_hub.domain.delivery import Delivered, PermanentFailure, TransientFailure
from integration_hub.domain.models import Outcome
from integration_hub.domain.outbound import OutboundPolicy
from support import LOCAL_OUTBOUND

from .fake_http import unused_port
from .messages import mail
from .smtp_server import Certificate, SmtpServer, self_signed_certificate

USERS = {"mailer": "s3cret-smtp-password"}


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return self_signed_certificate(tmp_path_factory.mktemp("smtp-tls"))


@pytest.fixture
def plain_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def starttls_server(certificate: Certificate) -> Iterator[SmtpServer]:
    server = SmtpServer(certificate=certificate, users=USERS)
    server.start()
    yield server
    server.stop()


def config_for(server: SmtpServer, **overrides: object) -> dict[str, object]:
    """The ``smtp`` provider configuration that sends to ``server``."""
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": server.port,
        "security": "none",
        "from_address": "notifications@hub.example.com",
        "local_hostname": "hub.test",
        "timeout": 2.0,
    }
    values.update(overrides)
    return values


def settings_for(server: SmtpServer, **overrides: object) -> SmtpSettings:
    return SmtpSettings.model_validate(config_for(server, **overrides))


@pytest.fixture
async def plain(plain_server: SmtpServer) -> AsyncIterator[SmtpProvider]:
    provider = SmtpProvider(
        settings_for(plain_server, reply_to="support@hub.example.com"), outbound=LOCAL_OUTBOUND
    )
    yield provider
    await provider.close()


def tls_settings(server: SmtpServer, certificate: Certificate, **overrides: object) -> SmtpSettings:
    values: dict[str, object] = {
        "security": "starttls",
        "username": "mailer",
        "password": USERS["mailer"],
        "ca_file": str(certificate.cert),
    }
    values.update(overrides)
    return settings_for(server, **values)


async def test_smtp_plain_delivery_arrives_with_headers_and_both_bodies(
    plain_server: SmtpServer, plain: SmtpProvider
) -> None:
    message = mail(
        "ana@example.org",
        "Hello Ana, your receipt is attached.",
        subject="Your receipt",
        metadata={"email": {"html": "<p>Hello <b>Ana</b></p>"}},
        notification_id="ntf_0190abcd",
    )

    result = await plain.send(message)

    assert result == Delivered("<ntf_0190abcd@hub.example.com>")
    [received] = plain_server.messages
    assert received.mail_from == "notifications@hub.example.com"
    assert received.rcpt_tos == ["ana@example.org"]
    headers = received.message
    assert headers["From"] == "notifications@hub.example.com"
    assert headers["To"] == "ana@example.org"
    assert headers["Subject"] == "Your receipt"
    assert headers["Reply-To"] == "support@hub.example.com"
    assert headers["Message-ID"] == "<ntf_0190abcd@hub.example.com>"
    assert headers.get_content_type() == "multipart/alternative"
    text = headers.get_body(preferencelist=("plain",))
    html = headers.get_body(preferencelist=("html",))
    assert text is not None
    assert html is not None
    assert text.get_content().strip() == "Hello Ana, your receipt is attached."
    assert html.get_content().strip() == "<p>Hello <b>Ana</b></p>"


async def test_smtp_built_by_the_registry_from_its_config_sends_and_checks(
    plain_server: SmtpServer,
) -> None:
    # As the hub builds it: by name, from the tenant's stored configuration.
    port = registry.build("smtp", config_for(plain_server), LOCAL_OUTBOUND)
    try:
        assert isinstance(port, SmtpProvider)
        assert port.name == "smtp"
        sent = await port.send(mail("ana@example.org", "Built from its configuration"))
        check = await port.check()
    finally:
        await port.close()
    assert isinstance(sent, Delivered)
    [received] = plain_server.messages
    assert received.rcpt_tos == ["ana@example.org"]
    assert check.ok, check.detail


async def test_smtp_text_only_message_is_not_multipart(
    plain_server: SmtpServer, plain: SmtpProvider
) -> None:
    assert isinstance(await plain.send(mail(body="just text")), Delivered)

    received = plain_server.messages[0].message
    assert received.get_content_type() == "text/plain"


async def test_smtp_message_id_is_the_same_on_every_attempt(
    plain_server: SmtpServer, plain: SmtpProvider
) -> None:
    first = await plain.send(mail(notification_id="ntf_retry", attempt=1))
    second = await plain.send(mail(notification_id="ntf_retry", attempt=2))

    assert first == second == Delivered("<ntf_retry@hub.example.com>")
    ids = [m.message["Message-ID"] for m in plain_server.messages]
    assert ids == ["<ntf_retry@hub.example.com>"] * 2


async def test_smtp_two_sends_reuse_one_connection(
    plain_server: SmtpServer, plain: SmtpProvider
) -> None:
    assert isinstance(await plain.send(mail()), Delivered)
    assert isinstance(await plain.send(mail()), Delivered)

    assert plain_server.connections == 1
    assert len({m.peer for m in plain_server.messages}) == 1


async def test_smtp_concurrent_sends_use_at_most_pool_size_connections(
    plain_server: SmtpServer,
) -> None:
    provider = SmtpProvider(settings_for(plain_server, pool_size=2), outbound=LOCAL_OUTBOUND)
    try:
        results = await asyncio.gather(*(provider.send(mail()) for _ in range(6)))
    finally:
        await provider.close()

    assert all(isinstance(r, Delivered) for r in results)
    assert len(plain_server.messages) == 6
    assert 1 <= plain_server.connections <= 2


async def test_smtp_reconnects_when_the_server_dropped_an_idle_connection() -> None:
    server = SmtpServer(idle_timeout=0.3)
    server.start()
    provider = SmtpProvider(settings_for(server), outbound=LOCAL_OUTBOUND)
    try:
        assert isinstance(await provider.send(mail()), Delivered)
        await asyncio.sleep(0.8)  # the server closes the idle connection meanwhile
        result = await provider.send(mail())
    finally:
        await provider.close()
        server.stop()

    assert isinstance(result, Delivered)
    assert server.connections == 2
    assert len(server.messages) == 2


async def test_smtp_starttls_with_auth_delivers_over_tls(
    starttls_server: SmtpServer, certificate: Certificate
) -> None:
    provider = SmtpProvider(tls_settings(starttls_server, certificate), outbound=LOCAL_OUTBOUND)
    try:
        result = await provider.send(mail())
    finally:
        await provider.close()

    assert isinstance(result, Delivered)
    [received] = starttls_server.messages
    assert received.tls
    assert received.authenticated


async def test_smtp_implicit_tls_delivers(certificate: Certificate) -> None:
    server = SmtpServer(certificate=certificate, implicit_tls=True)
    server.start()
    provider = SmtpProvider(
        settings_for(server, security="tls", ca_file=str(certificate.cert)), outbound=LOCAL_OUTBOUND
    )
    try:
        result = await provider.send(mail())
    finally:
        await provider.close()
        server.stop()

    assert isinstance(result, Delivered)
    assert server.messages[0].tls


async def test_smtp_wrong_password_is_configuration_and_never_echoed(
    starttls_server: SmtpServer, certificate: Certificate
) -> None:
    provider = SmtpProvider(
        tls_settings(starttls_server, certificate, password="wrong-password-xyz"),
        outbound=LOCAL_OUTBOUND,
    )
    try:
        result = await provider.send(mail())
    finally:
        await provider.close()

    assert isinstance(result, PermanentFailure)
    assert (result.code, result.error_class, result.configuration) == (
        "535",
        "authentication",
        True,
    )
    assert result.outcome is Outcome.CONFIGURATION
    assert "wrong-password-xyz" not in result.message
    assert "wrong-password-xyz" not in repr(provider.settings)
    assert starttls_server.messages == []


async def test_smtp_untrusted_server_certificate_is_configuration(
    starttls_server: SmtpServer, certificate: Certificate
) -> None:
    # No ca_file: the self-signed certificate is not trusted by the system store.
    provider = SmtpProvider(
        tls_settings(starttls_server, certificate, ca_file=None), outbound=LOCAL_OUTBOUND
    )
    try:
        result = await provider.send(mail())
    finally:
        await provider.close()

    assert isinstance(result, PermanentFailure)
    assert (result.error_class, result.configuration) == ("tls_error", True)


async def test_smtp_missing_ca_file_is_configuration(
    starttls_server: SmtpServer, certificate: Certificate, tmp_path: Path
) -> None:
    missing = str(tmp_path / "nope.pem")
    provider = SmtpProvider(
        tls_settings(starttls_server, certificate, ca_file=missing), outbound=LOCAL_OUTBOUND
    )
    try:
        result = await provider.send(mail())
    finally:
        await provider.close()

    assert isinstance(result, PermanentFailure)
    assert (result.error_class, result.configuration) == ("tls_settings", True)


@pytest.mark.parametrize("reply", ["451 4.3.0 Try again later", "452 4.3.1 Insufficient storage"])
async def test_smtp_4xx_reply_to_data_is_transient(
    plain_server: SmtpServer, plain: SmtpProvider, reply: str
) -> None:
    plain_server.handler.data_reply = reply

    result = await plain.send(mail())

    assert isinstance(result, TransientFailure)
    assert result.code == reply[:3]


async def test_smtp_450_recipient_deferral_is_transient(
    plain_server: SmtpServer, plain: SmtpProvider
) -> None:
    plain_server.handler.rcpt_reply = "450 4.2.0 Greylisted, try again later"

    result = await plain.send(mail())

    assert isinstance(result, TransientFailure)
    assert (result.code, result.error_class) == ("450", "recipient_deferred")


@pytest.mark.parametrize(
    "reply",
    [
        "550 5.1.1 No such user here",
        "553 5.1.3 Bad recipient address syntax",
        "501 5.1.3 Bad address",
    ],
)
async def test_smtp_5xx_recipient_rejection_is_permanent(
    plain_server: SmtpServer, plain: SmtpProvider, reply: str
) -> None:
    plain_server.handler.rcpt_reply = reply

    result = await plain.send(mail("nobody@example.org"))

    assert isinstance(result, PermanentFailure)
    assert (result.code, result.error_class, result.configuration) == (
        reply[:3],
        "recipient_rejected",
        False,
    )
    assert "nobody@example.org" in result.message


async def test_smtp_connection_stays_usable_after_a_rejected_recipient(
    plain_server: SmtpServer, plain: SmtpProvider
) -> None:
    plain_server.handler.rcpt_reply = "550 5.1.1 No such user here"
    assert isinstance(await plain.send(mail()), PermanentFailure)
    plain_server.handler.rcpt_reply = None

    assert isinstance(await plain.send(mail()), Delivered)
    assert plain_server.connections == 1


async def test_smtp_5xx_reply_to_data_is_permanent(
    plain_server: SmtpServer, plain: SmtpProvider
) -> None:
    plain_server.handler.data_reply = "554 5.6.0 Message content rejected"

    result = await plain.send(mail())

    assert isinstance(result, PermanentFailure)
    assert (result.code, result.error_class, result.configuration) == (
        "554",
        "message_rejected",
        False,
    )


async def test_smtp_connection_refused_is_transient() -> None:
    settings = SmtpSettings(
        host="127.0.0.1",
        port=unused_port(),
        security="none",
        from_address="n@hub.example.com",
        local_hostname="hub.test",
        timeout=1.0,
    )
    provider = SmtpProvider(settings, outbound=LOCAL_OUTBOUND)
    try:
        result = await provider.send(mail())
    finally:
        await provider.close()

    assert isinstance(result, TransientFailure)
    assert result.error_class == "connection_error"


async def test_smtp_subject_with_a_line_break_is_permanent_and_never_sent(
    plain_server: SmtpServer, plain: SmtpProvider
) -> None:
    result = await plain.send(mail(subject="Hi\r\nBcc: victim@example.org"))

    assert isinstance(result, PermanentFailure)
    assert result.error_class == "invalid_message"
    assert plain_server.messages == []


async def test_smtp_server_that_never_answers_is_a_transient_timeout() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # accept, then say nothing: no 220 banner

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = SmtpSettings(
        host="127.0.0.1",
        port=port,
        security="none",
        from_address="n@hub.example.com",
        local_hostname="hub.test",
        timeout=0.3,
    )
    provider = SmtpProvider(settings, outbound=LOCAL_OUTBOUND)
    try:
        result = await provider.send(mail())
    finally:
        await provider.close()
        for writer in accepted:
            writer.close()
            await writer.wait_closed()
        server.close()
        await server.wait_closed()

    assert isinstance(result, TransientFailure)
    assert result.error_class == "timeout"
    assert accepted


async def test_smtp_check_logs_in_over_starttls_without_sending(
    starttls_server: SmtpServer, certificate: Certificate
) -> None:
    provider = SmtpProvider(tls_settings(starttls_server, certificate), outbound=LOCAL_OUTBOUND)
    result = await provider.check()
    await provider.close()
    assert result.ok, result.detail
    assert "logged in" in result.detail
    assert starttls_server.messages == []


async def test_smtp_check_with_a_wrong_password_is_a_configuration_problem(
    starttls_server: SmtpServer, certificate: Certificate
) -> None:
    provider = SmtpProvider(
        tls_settings(starttls_server, certificate, password="wrong-password-xyz"),
        outbound=LOCAL_OUTBOUND,
    )
    result = await provider.check()
    await provider.close()
    assert not result.ok
    assert result.detail.startswith("configuration")
    assert "wrong-password-xyz" not in result.detail


async def test_smtp_check_against_nobody_is_transient() -> None:
    provider = SmtpProvider(
        SmtpSettings(
            host="127.0.0.1",
            port=unused_port(),
            security="none",
            from_address="hub@example.com",
            timeout=1,
        ),
        outbound=LOCAL_OUTBOUND,
    )
    result = await provider.check()
    await provider.close()
    assert not result.ok
    assert result.detail.startswith("transient")


# -- the outbound rule (SSRF) ---------------------------------------------------


def fake_dns(monkeypatch: pytest.MonkeyPatch, name: str, address: str) -> None:
    """Make the running loop resolve ``name`` to ``address`` (other names as usual)."""
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo

    async def getaddrinfo(
        host: bytes | str | None, port: bytes | str | int | None, **kwargs: Any
    ) -> Any:
        return await real(address if host == name else host, port, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)


async def test_smtp_refuses_an_internal_host_without_connecting(plain_server: SmtpServer) -> None:
    provider = SmtpProvider(settings_for(plain_server), outbound=OutboundPolicy())
    try:
        result = await provider.send(mail())
    finally:
        await provider.close()
    assert isinstance(result, PermanentFailure)
    assert (result.outcome, result.error_class) == (Outcome.CONFIGURATION, "outbound_refused")
    assert "address 127.0.0.1 is loopback" in result.message
    assert plain_server.connections == 0


async def test_smtp_refuses_a_name_that_resolves_to_an_internal_address(
    plain_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dns(monkeypatch, "mail.example.test", "127.0.0.1")
    provider = SmtpProvider(
        settings_for(plain_server, host="mail.example.test"), outbound=OutboundPolicy()
    )
    try:
        result = await provider.send(mail())
        check = await provider.check()
    finally:
        await provider.close()
    assert isinstance(result, PermanentFailure)
    assert result.outcome is Outcome.CONFIGURATION
    assert "address 127.0.0.1 of mail.example.test is loopback" in result.message
    assert not check.ok
    assert plain_server.connections == 0


async def test_smtp_connects_to_the_checked_address_of_an_allowed_name(
    plain_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dns(monkeypatch, "mail.example.test", "127.0.0.1")
    provider = SmtpProvider(
        settings_for(plain_server, host="mail.example.test"), outbound=LOCAL_OUTBOUND
    )
    try:
        result = await provider.send(mail())
    finally:
        await provider.close()
    assert isinstance(result, Delivered)
    assert len(plain_server.messages) == 1


def test_an_smtp_reply_is_bounded_and_sanitised_before_a_tenant_reads_it() -> None:
    reply = "5.7.1 rejected\r\n\x1b[2J" + "s3cret-smtp-password " + "y" * 5000
    result = classify(aiosmtplib.SMTPDataError(554, reply), ("s3cret-smtp-password",))
    assert isinstance(result, PermanentFailure)
    assert result.message.startswith("smtp: SMTPDataError: (554, '5.7.1 rejected")
    assert len(result.message) <= 400
    assert "s3cret" not in result.message
    assert not any(ord(c) < 32 for c in result.message)


async def test_smtp_a_message_that_cannot_be_built_keeps_the_library_text_out_of_the_tenant_message(
    plain_server: SmtpServer, plain: SmtpProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    from integration_hub.adapters.providers import smtp

    def refuse(settings: SmtpSettings, message: Any) -> Any:
        # The email library's texts may quote what it refused.
        raise ValueError("invalid address 'ana@example.org\\r\\nBcc: victim@example.org'")

    monkeypatch.setattr(smtp, "build_email", refuse)
    result = await plain.send(mail())

    assert isinstance(result, PermanentFailure)
    assert result.error_class == "invalid_message"
    assert "ValueError" in result.message
    assert "example.org" not in result.message
    assert plain_server.messages == []


async def test_smtp_a_subject_with_a_line_break_is_not_quoted_back_to_the_tenant(
    plain_server: SmtpServer, plain: SmtpProvider
) -> None:
    result = await plain.send(mail(subject="Hi\r\nBcc: victim@example.org"))

    assert isinstance(result, PermanentFailure)
    assert "victim@example.org" not in result.message
