"""Tenant ids and API keys."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from integration_hub.domain.errors import HubError
from integration_hub.domain.tenants import (
    ApiKeyRecord,
    hash_api_key,
    key_matches,
    new_api_key,
    parse_api_key,
    validate_tenant_id,
)

KEY_FORMAT = re.compile(r"ihub_(?P<id>[0-9a-f]{12})_(?P<secret>[A-Za-z0-9_-]{43,})")


def _record(key: str, key_id: str) -> ApiKeyRecord:
    return ApiKeyRecord(
        key_id=key_id,
        tenant="acme",
        hash=hash_api_key(key),
        created_at=datetime(2024, 1, 1, tzinfo=UTC),
    )


# --- new_api_key -----------------------------------------------------------


def test_a_new_api_key_has_the_format_ihub_id_secret() -> None:
    key_id, key = new_api_key()
    match = KEY_FORMAT.fullmatch(key)
    assert match is not None, key
    assert match["id"] == key_id


def test_new_api_keys_are_unique_in_id_and_secret() -> None:
    keys = [new_api_key() for _ in range(200)]
    assert len({key_id for key_id, _ in keys}) == 200
    assert len({key for _, key in keys}) == 200


# --- parse_api_key ---------------------------------------------------------


def test_parse_api_key_returns_the_id_of_every_generated_key() -> None:
    # Secrets are url-safe base64 and may themselves contain '_'.
    for _ in range(500):
        key_id, key = new_api_key()
        assert parse_api_key(key) == key_id


def test_parse_api_key_keeps_underscores_in_the_secret() -> None:
    assert parse_api_key("ihub_0123456789ab_se_cr_et") == "0123456789ab"


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("", id="empty"),
        pytest.param("ihub", id="prefix-only"),
        pytest.param("ihub_0123456789ab", id="no-secret-part"),
        pytest.param("IHUB_0123456789ab_secret", id="upper-case-prefix"),
        pytest.param("sk_0123456789ab_secret", id="other-prefix"),
        pytest.param("ihub_0123456789a_secret", id="11-char-id"),
        pytest.param("ihub_0123456789abc_secret", id="13-char-id"),
        pytest.param("ihub__secret", id="empty-id"),
        pytest.param("Bearer ihub_0123456789ab_secret", id="with-scheme"),
        pytest.param("0123456789ab_secret", id="no-prefix"),
        pytest.param("ihub-0123456789ab-secret", id="dashes"),
    ],
)
def test_parse_api_key_returns_none_for_a_malformed_key(key: str) -> None:
    assert parse_api_key(key) is None


# --- hashing and matching --------------------------------------------------


def test_key_matches_the_right_key() -> None:
    key_id, key = new_api_key()
    assert key_matches(key, _record(key, key_id))


def test_key_does_not_match_a_different_key_with_the_same_id() -> None:
    key_id, key = new_api_key()
    _, other = new_api_key()
    forged = f"ihub_{key_id}_{other.split('_', 2)[2]}"
    assert parse_api_key(forged) == key_id
    assert not key_matches(forged, _record(key, key_id))


def test_key_does_not_match_when_one_character_of_the_secret_differs() -> None:
    key_id, key = new_api_key()
    tampered = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert not key_matches(tampered, _record(key, key_id))


def test_the_stored_hash_is_not_the_key() -> None:
    key_id, key = new_api_key()
    stored = _record(key, key_id).hash
    secret = key.split("_", 2)[2]
    assert stored != key
    assert secret not in stored
    assert re.fullmatch(r"[0-9a-f]{64}", stored)


def test_hashing_is_deterministic_so_a_stored_hash_can_be_checked_later() -> None:
    _, key = new_api_key()
    assert hash_api_key(key) == hash_api_key(key)
    assert hash_api_key(key) != hash_api_key(key + "x")


# --- validate_tenant_id ----------------------------------------------------


@pytest.mark.parametrize(
    "tenant_id", ["acme", "a", "7", "acme-corp", "tenant-42", "0day", "a-", "a" * 63]
)
def test_validate_tenant_id_accepts_lowercase_slugs(tenant_id: str) -> None:
    assert validate_tenant_id(tenant_id) == tenant_id


@pytest.mark.parametrize(
    "tenant_id",
    [
        pytest.param("Acme", id="uppercase"),
        pytest.param("ACME", id="all-uppercase"),
        pytest.param("acme corp", id="space"),
        pytest.param(" acme", id="leading-space"),
        pytest.param("-acme", id="leading-dash"),
        pytest.param("a" * 64, id="64-chars"),
        pytest.param("a" * 100, id="100-chars"),
        pytest.param("", id="empty"),
        pytest.param("acme_corp", id="underscore"),
        pytest.param("acme.corp", id="dot"),
        pytest.param("acme/corp", id="slash"),
        pytest.param("ácme", id="non-ascii"),
        pytest.param(
            "acme\n",
            id="trailing-newline",
        ),
    ],
)
def test_validate_tenant_id_refuses_anything_but_a_lowercase_slug(tenant_id: str) -> None:
    with pytest.raises(HubError) as caught:
        validate_tenant_id(tenant_id)
    assert caught.value.field == "tenant"


@pytest.mark.parametrize("key", ["ihub_zzzzzzzzzzzz_secret", "ihub_0123456789ab_"])
def test_keys_with_a_non_hex_id_or_no_secret_are_malformed(key: str) -> None:
    assert parse_api_key(key) is None
