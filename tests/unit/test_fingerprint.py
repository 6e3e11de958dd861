"""Idempotency fingerprints: equal for the same content, different otherwise."""

from __future__ import annotations

import re
from typing import Any

import pytest

from integration_hub.domain.models import NotificationRequest, fingerprint

COMPACT = (
    '{"recipient":{"email":"ana@example.com","phone":"+34600111222"},'
    '"subject":"Hola","body":"Tu pedido ha salido","metadata":{"order":42,"tags":["a","b"],'
    '"nested":{"x":1,"y":2}}}'
)
REORDERED_AND_SPACED = """
{
    "metadata" : { "nested" : { "y" : 2, "x" : 1 }, "tags" : [ "a", "b" ], "order" : 42 },
    "body"     : "Tu pedido ha salido",
    "subject"  : "Hola",
    "recipient": { "phone": "+34600111222",   "email": "ana@example.com" }
}
"""

BASE: dict[str, Any] = {
    "recipient": {"email": "ana@example.com", "phone": "+34600111222"},
    "subject": "Hola",
    "body": "Tu pedido ha salido",
    "metadata": {"order": 42},
}


def _fp(country: str = "ES", **changes: Any) -> str:
    return fingerprint(country, NotificationRequest.model_validate({**BASE, **changes}))


def _json_fp(text: str, country: str = "ES") -> str:
    return fingerprint(country, NotificationRequest.model_validate_json(text))


def test_the_fingerprint_is_a_sha256_hex_digest() -> None:
    assert re.fullmatch(r"[0-9a-f]{64}", _fp())


def test_the_same_request_always_gives_the_same_fingerprint() -> None:
    assert _json_fp(COMPACT) == _json_fp(COMPACT)


def test_key_order_and_whitespace_in_the_json_do_not_change_the_fingerprint() -> None:
    assert _json_fp(COMPACT) == _json_fp(REORDERED_AND_SPACED)


def test_a_unicode_escape_and_the_literal_character_give_the_same_fingerprint() -> None:
    literal = '{"recipient":{"email":"ana@example.com"},"body":"café"}'
    escaped = '{"recipient":{"email":"ana@example.com"},"body":"caf\\u00e9"}'
    assert _json_fp(literal) == _json_fp(escaped)


def test_a_different_country_gives_a_different_fingerprint() -> None:
    assert _json_fp(COMPACT, "ES") != _json_fp(COMPACT, "FR")


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"body": "Tu pedido ha llegado"}, id="body"),
        pytest.param({"body": "Tu pedido ha salido "}, id="body-trailing-space"),
        pytest.param({"subject": "Adiós"}, id="subject"),
        pytest.param({"subject": None}, id="subject-removed"),
        pytest.param(
            {"recipient": {"email": "eva@example.com", "phone": "+34600111222"}},
            id="recipient-email",
        ),
        pytest.param(
            {"recipient": {"email": "ana@example.com", "phone": "+34600111333"}},
            id="recipient-phone",
        ),
        pytest.param({"recipient": {"email": "ana@example.com"}}, id="recipient-phone-removed"),
        pytest.param({"metadata": {"order": 43}}, id="metadata-value"),
        pytest.param({"metadata": {"order": "42"}}, id="metadata-value-type"),
        pytest.param({"metadata": {"ordre": 42}}, id="metadata-key"),
        pytest.param({"metadata": {"order": 42, "extra": True}}, id="metadata-added-key"),
        pytest.param({"metadata": None}, id="metadata-removed"),
    ],
)
def test_different_content_gives_a_different_fingerprint(changes: dict[str, Any]) -> None:
    assert _fp(**changes) != _fp()


def test_explicit_null_metadata_equals_absent_metadata() -> None:
    absent = '{"recipient":{"email":"ana@example.com"},"body":"hi"}'
    explicit = '{"recipient":{"email":"ana@example.com"},"body":"hi","metadata":null}'
    assert _json_fp(absent) == _json_fp(explicit)


def test_explicit_null_subject_and_phone_equal_absent_ones() -> None:
    absent = '{"recipient":{"email":"ana@example.com"},"body":"hi"}'
    explicit = '{"recipient":{"email":"ana@example.com","phone":null},"body":"hi","subject":null}'
    assert _json_fp(absent) == _json_fp(explicit)


def test_a_null_inside_metadata_is_content_and_is_not_dropped() -> None:
    assert _fp(metadata={"order": 42, "note": None}) != _fp(metadata={"order": 42})


def test_the_fingerprint_of_a_known_request_is_stable_across_releases() -> None:
    # Fingerprints are stored with idempotency keys: if this value changes, a
    # client retrying across a deploy gets a false IdempotencyConflict. Pinned
    # value: sha256 of the UTF-8 canonical JSON (sorted keys, no spaces, no
    # \u escapes) of {"country": ..., "body": <request without nulls>}, checked
    # with `printf '%s' '<that JSON>' | sha256sum`.
    request = NotificationRequest.model_validate_json(
        '{"recipient":{"email":"ana@example.com","phone":null},"subject":"Pedido",'
        '"body":"Tu pedido ha salido ✈","metadata":{"order":42,"tags":["año"]}}'
    )
    assert fingerprint("ES", request) == (
        "3391a25a693dd4901cba295ca58b179dc4f81381416e414eff239b109f236351"
    )
