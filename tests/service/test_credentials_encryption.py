"""Envelope encryption of provider settings, on the real SQLite backend."""

from __future__ import annotations

import base64
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from integration_hub.adapters.crypto.envelope import EncryptedCredentials
from integration_hub.adapters.crypto.local import (
    KeyFile,
    KeyRingError,
    LocalKeyRing,
    new_key_id,
    parse_env_keys,
)
from integration_hub.adapters.sqlite.credentials import SqliteCredentials
from integration_hub.adapters.sqlite.database import SqliteDatabase
from integration_hub.adapters.sqlite.store import SqliteStore
from support import ManualClock, tenant

SECRET = "tw-auth-token-that-must-never-be-stored-plain"
CONFIG = {"account_sid": "AC123", "auth_token": SECRET, "from_number": "+15005550006"}


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqliteDatabase]:
    clock = ManualClock()
    database = SqliteDatabase(tmp_path / "secrets.db", clock=clock)
    await database.migrate()
    store = SqliteStore(database)
    for t in ("acme", "globex"):
        await store.create_tenant(tenant(t, clock))
    yield database
    database.close()


@pytest.fixture
def key_file(tmp_path: Path) -> KeyFile:
    keys = KeyFile(tmp_path / "master.key")
    keys.create()
    return keys


def sealed_store(db: SqliteDatabase, key_file: KeyFile) -> EncryptedCredentials:
    plain = SqliteCredentials(db)
    return EncryptedCredentials(plain, plain, lambda: LocalKeyRing.from_file(key_file))


async def test_settings_round_trip_and_are_not_stored_in_plain(
    db: SqliteDatabase, key_file: KeyFile
) -> None:
    store = sealed_store(db, key_file)
    await store.put_credentials("acme", "twilio", CONFIG)
    assert await store.get_credentials("acme", "twilio") == CONFIG
    assert await store.list_credentials("acme") == ["twilio"]
    db.close()
    raw = b"".join(p.read_bytes() for p in db.path.parent.glob("secrets.db*"))
    assert SECRET.encode() not in raw
    assert b"AC123" not in raw  # the whole settings object is sealed, not just secrets


async def test_a_ciphertext_copied_to_another_tenant_does_not_decrypt(
    db: SqliteDatabase, key_file: KeyFile
) -> None:
    store = sealed_store(db, key_file)
    plain = SqliteCredentials(db)
    await store.put_credentials("acme", "twilio", CONFIG)
    await store.put_credentials("globex", "smtp", {"host": "mail.example.com"})
    stolen = await plain.get_credentials("acme", "twilio")
    assert stolen is not None
    await plain.put_credentials("globex", "twilio", stolen)  # moved in the database
    with pytest.raises(KeyRingError, match="do not decrypt"):
        await store.get_credentials("globex", "twilio")
    await plain.put_credentials("acme", "smtp", stolen)  # moved to another provider
    with pytest.raises(KeyRingError, match="do not decrypt"):
        await store.get_credentials("acme", "smtp")


async def test_a_data_key_copied_to_another_tenant_does_not_unwrap(
    db: SqliteDatabase, key_file: KeyFile
) -> None:
    store = sealed_store(db, key_file)
    plain = SqliteCredentials(db)
    await store.put_credentials("acme", "twilio", CONFIG)
    wrapped = await plain.get_data_key("acme")
    assert wrapped is not None
    ring = LocalKeyRing.from_file(key_file)
    with pytest.raises(KeyRingError):
        await ring.decrypt_data_key(wrapped, {"tenant": "globex"})


async def test_plain_settings_in_the_database_are_refused(
    db: SqliteDatabase, key_file: KeyFile
) -> None:
    await SqliteCredentials(db).put_credentials("acme", "twilio", CONFIG)
    with pytest.raises(KeyRingError, match="not encrypted"):
        await sealed_store(db, key_file).get_credentials("acme", "twilio")


async def test_rotating_the_master_key_rewraps_and_both_keys_work_meanwhile(
    db: SqliteDatabase, key_file: KeyFile
) -> None:
    old_store = sealed_store(db, key_file)
    await old_store.put_credentials("acme", "twilio", CONFIG)
    await old_store.put_credentials("globex", "twilio", CONFIG)
    old_primary, keys = key_file.load()
    new = new_key_id()
    key_file.save(new, {**keys, new: os.urandom(32)})
    # A process that started before the rotation still reads everything.
    assert await old_store.get_credentials("acme", "twilio") == CONFIG
    rotator = sealed_store(db, key_file)
    result = await rotator.rotate_master()
    assert (result.rewrapped, result.primary) == (2, new)
    assert (await rotator.rotate_master()).rewrapped == 0
    plain = SqliteCredentials(db)
    ring = LocalKeyRing.from_file(key_file)
    assert {ring.key_id_of(w) for _, w in await plain.list_data_keys()} == {new}
    # A fresh process decrypts with the new key, and the old key can go.
    key_file.save(new, {new: ring.keys[new]})
    fresh = sealed_store(db, key_file)
    assert await fresh.get_credentials("globex", "twilio") == CONFIG
    assert old_primary != new


def test_the_key_file_is_created_private_and_others_may_not_read_it(tmp_path: Path) -> None:
    keys = KeyFile(tmp_path / "k" / "master.key")
    kid = keys.create()
    assert stat.S_IMODE(keys.path.stat().st_mode) == 0o600
    assert keys.load()[0] == kid
    keys.path.chmod(0o644)
    with pytest.raises(KeyRingError, match="chmod 600"):
        keys.load()


def test_master_keys_from_the_environment() -> None:
    a, b = base64.b64encode(b"a" * 32).decode(), base64.b64encode(b"b" * 32).decode()
    primary, keys = parse_env_keys(f"new:{b},old:{a}")
    assert (primary, sorted(keys)) == ("new", ["new", "old"])
    assert parse_env_keys(a) == ("env", {"env": b"a" * 32})
    with pytest.raises(KeyRingError, match="32 bytes"):
        parse_env_keys(base64.b64encode(b"short").decode())
    with pytest.raises(KeyRingError, match="base64"):
        parse_env_keys("k:not base64!")


async def test_an_unknown_master_key_is_an_error() -> None:
    ring = LocalKeyRing("one", {"one": b"1" * 32})
    _, wrapped = await ring.generate_data_key({"tenant": "acme"})
    other = LocalKeyRing("two", {"two": b"2" * 32})
    with pytest.raises(KeyRingError, match="not in the key ring"):
        await other.decrypt_data_key(wrapped, {"tenant": "acme"})


# -- sealed values (webhook secrets) ----------------------------------------------------------


async def test_a_sealed_value_opens_only_for_its_tenant_and_purpose(
    db: SqliteDatabase, key_file: KeyFile
) -> None:
    store = sealed_store(db, key_file)
    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    value = {"current": secret, "previous": None}
    sealed = await store.seal("acme", "webhook:ep_1", value)
    assert secret not in str(sealed)
    assert await store.unseal("acme", "webhook:ep_1", sealed) == value
    # The same ciphertext moved to another endpoint or tenant does not open.
    with pytest.raises(KeyRingError):
        await store.unseal("acme", "webhook:ep_2", sealed)
    await store.seal("globex", "webhook:ep_1", value)  # globex gets its own data key
    with pytest.raises(KeyRingError):
        await store.unseal("globex", "webhook:ep_1", sealed)
    with pytest.raises(KeyRingError):
        await store.unseal("acme", "webhook:ep_1", {**sealed, "scheme": "plain"})
    tampered = base64.b64decode(sealed["ciphertext"])
    tampered = bytes([tampered[0] ^ 1]) + tampered[1:]
    with pytest.raises(KeyRingError):
        await store.unseal(
            "acme", "webhook:ep_1", {**sealed, "ciphertext": base64.b64encode(tampered).decode()}
        )


async def test_a_tenant_without_a_data_key_cannot_unseal(
    db: SqliteDatabase, key_file: KeyFile
) -> None:
    store = sealed_store(db, key_file)
    sealed = await store.seal("acme", "webhook:ep_1", {"current": "x"})
    with pytest.raises(KeyRingError):
        await store.unseal("initech", "webhook:ep_1", sealed)
