"""Shared HTTP helpers: Retry-After, redaction, transport error classification."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import aiohttp
import pytest

from integration_hub.adapters.providers.http import (
    HttpOptions,
    build_session,
    parse_retry_after,
    redact,
    transport_failure,
)
from integration_hub.domain.delivery import PermanentFailure, TransientFailure

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("7", 7.0), (" 120 ", 120.0), ("1.5", 1.5), ("0", 0.0), ("-3", 0.0)],
)
def test_retry_after_in_seconds_is_parsed(header: str, seconds: float) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


def test_retry_after_as_an_http_date_is_the_delay_until_then() -> None:
    header = format_datetime(NOW + timedelta(seconds=90), usegmt=True)

    assert parse_retry_after(header, now=NOW) == 90.0


def test_retry_after_in_the_past_means_now() -> None:
    header = format_datetime(NOW - timedelta(hours=1), usegmt=True)

    assert parse_retry_after(header, now=NOW) == 0.0


@pytest.mark.parametrize("header", [None, "", "soon", "nan", "inf", "Mon, 99 Foo 2026"])
def test_unusable_retry_after_is_ignored(header: str | None) -> None:
    assert parse_retry_after(header, now=NOW) is None


def test_redact_hides_every_secret_and_ignores_empty_ones() -> None:
    assert redact("token=abc and abc again", ["abc", ""]) == "token=*** and *** again"


def test_timeout_is_transient() -> None:
    result = transport_failure("twilio", TimeoutError())

    assert isinstance(result, TransientFailure)
    assert result.error_class == "timeout"


def test_certificate_failure_is_configuration() -> None:
    error = ssl.SSLCertVerificationError("certificate verify failed: self-signed certificate")

    result = transport_failure("twilio", error)

    assert isinstance(result, PermanentFailure)
    assert (result.error_class, result.configuration) == ("tls_error", True)


def test_transport_failure_redacts_secrets() -> None:
    result = transport_failure("twilio", aiohttp.ClientError("boom with s3cret"), ["s3cret"])

    assert isinstance(result, TransientFailure)
    assert "s3cret" not in result.message


async def test_built_session_uses_the_pool_limit_and_timeouts() -> None:
    options = HttpOptions(total_timeout=3.0, connect_timeout=1.0, pool_limit=7)

    session = build_session(options)
    try:
        assert isinstance(session.connector, aiohttp.TCPConnector)
        assert session.connector.limit == 7
        assert session.timeout.total == 3.0
        assert session.timeout.sock_connect == 1.0
    finally:
        await session.close()
