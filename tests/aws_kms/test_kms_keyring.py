"""The KMS key ring against moto in server mode, over real HTTP."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import boto3  # type: ignore[import-untyped]
import pytest
from moto.server import ThreadedMotoServer

from integration_hub.adapters.crypto.envelope import EncryptedCredentials
from integration_hub.adapters.crypto.kms import KmsKeyRing
from integration_hub.adapters.crypto.local import KeyRingError
from integration_hub.adapters.sqlite.credentials import SqliteCredentials
from integration_hub.adapters.sqlite.database import SqliteDatabase
from integration_hub.adapters.sqlite.store import SqliteStore
from providers.fake_http import unused_port
from support import ManualClock, tenant

CREDS = {"region": "eu-west-1", "access_key_id": "testing", "secret_access_key": "testing"}


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    port = unused_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def new_key(url: str) -> str:
    kms = boto3.client(
        "kms",
        region_name="eu-west-1",
        endpoint_url=url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    try:
        key_id: str = kms.create_key(Description="ihub test")["KeyMetadata"]["KeyId"]
    finally:
        kms.close()  # left to the garbage collector, its socket is a ResourceWarning
    return key_id


@pytest.fixture
async def ring(moto_url: str) -> AsyncIterator[KmsKeyRing]:
    keyring = KmsKeyRing(new_key(moto_url), endpoint_url=moto_url, **CREDS)
    yield keyring
    await keyring.close()


async def test_a_data_key_round_trips_through_kms(ring: KmsKeyRing) -> None:
    plain, wrapped = await ring.generate_data_key({"tenant": "acme"})
    assert len(plain) == 32
    assert plain not in wrapped
    assert ring.key_id_of(wrapped) == ring.key_id
    assert await ring.decrypt_data_key(wrapped, {"tenant": "acme"}) == plain


async def test_the_encryption_context_binds_the_tenant(ring: KmsKeyRing) -> None:
    _, wrapped = await ring.generate_data_key({"tenant": "acme"})
    with pytest.raises(KeyRingError, match="Decrypt failed"):
        await ring.decrypt_data_key(wrapped, {"tenant": "globex"})


async def test_rewrap_moves_a_data_key_to_another_kms_key(moto_url: str, ring: KmsKeyRing) -> None:
    plain, wrapped = await ring.generate_data_key({"tenant": "acme"})
    other = KmsKeyRing(new_key(moto_url), endpoint_url=moto_url, **CREDS)
    try:
        moved = await other.rewrap(wrapped, {"tenant": "acme"})
        assert other.key_id_of(moved) == other.key_id
        assert await other.decrypt_data_key(moved, {"tenant": "acme"}) == plain
    finally:
        await other.close()


async def test_credentials_sealed_with_a_kms_key_ring(ring: KmsKeyRing, tmp_path: Path) -> None:
    clock = ManualClock()
    db = SqliteDatabase(tmp_path / "kms.db", clock=clock)
    await db.migrate()
    try:
        await SqliteStore(db).create_tenant(tenant("acme", clock))
        plain = SqliteCredentials(db)
        sealed = EncryptedCredentials(plain, plain, lambda: ring)
        secret = os.urandom(8).hex()
        await sealed.put_credentials("acme", "twilio", {"auth_token": secret})
        assert await sealed.get_credentials("acme", "twilio") == {"auth_token": secret}
        stored = await plain.get_credentials("acme", "twilio")
        assert secret not in str(stored)
    finally:
        db.close()


async def test_kms_down_is_a_key_ring_error() -> None:
    keyring = KmsKeyRing("alias/none", endpoint_url=f"http://127.0.0.1:{unused_port()}", **CREDS)
    try:
        with pytest.raises(KeyRingError, match="GenerateDataKey failed"):
            await keyring.generate_data_key({"tenant": "acme"})
    finally:
        await keyring.close()


async def test_the_hub_uses_kms_when_a_key_id_is_configured(
    moto_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from integration_hub.bootstrap import build_hub
    from integration_hub.config import Settings
    from integration_hub.service.tenants import create_tenant

    for name, value in {
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }.items():
        monkeypatch.setenv(name, value)
    key_id = new_key(moto_url)
    hub = await build_hub(
        Settings(database_url=f"sqlite:///{tmp_path / 'hub.db'}", kms_key_id=key_id)
    )
    try:
        await create_tenant(hub.store, hub.clock, "acme")
        await hub.credentials.put_credentials("acme", "smtp", {"password": "p"})
        assert await hub.credentials.get_credentials("acme", "smtp") == {"password": "p"}
        assert hub.credentials.keyring.primary_key_id() == key_id
        assert not (tmp_path / "hub.master.key").exists()  # no local key was needed
    finally:
        await hub.close()
