"""The CredentialStore port with envelope encryption over a plain store.

Each tenant has one data key (AES-256), kept only wrapped by the key ring
with the tenant id as encryption context. Each provider's settings are
sealed with AES-256-GCM under the tenant's data key, with tenant and
provider bound as associated data: a ciphertext copied to another tenant or
provider does not decrypt. Rotating the master key re-wraps the data keys;
the sealed settings do not change.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from integration_hub.adapters.crypto.local import KeyRingError
from integration_hub.domain.models import canonical_json
from integration_hub.ports import CredentialStore, DataKeyStore, KeyRing

SCHEME = "aes-256-gcm/v1"


@dataclass(frozen=True, slots=True)
class Rotation:
    """What a master key rotation did."""

    rewrapped: int
    already_current: int
    primary: str


def _aad(tenant: str, provider: str) -> bytes:
    return canonical_json({"scheme": SCHEME, "tenant": tenant, "provider": provider})


def _purpose_aad(tenant: str, purpose: str) -> bytes:
    return canonical_json({"scheme": SCHEME, "tenant": tenant, "purpose": purpose})


class EncryptedCredentials:
    """Seals provider settings per tenant before they reach the database."""

    def __init__(
        self,
        plain: CredentialStore,
        data_keys: DataKeyStore,
        keyring: Callable[[], KeyRing],
    ) -> None:
        self.plain = plain
        self.data_keys = data_keys
        self._keyring_factory = keyring
        self._keyring: KeyRing | None = None
        self._cache: dict[str, bytes] = {}
        self._lock = asyncio.Lock()

    @property
    def keyring(self) -> KeyRing:
        """The key ring, opened on first use (so a hub without secrets needs no key)."""
        if self._keyring is None:
            self._keyring = self._keyring_factory()
        return self._keyring

    async def _data_key(self, tenant: str, *, create: bool) -> bytes | None:
        cached = self._cache.get(tenant)
        if cached is not None:
            return cached
        async with self._lock:
            wrapped = await self.data_keys.get_data_key(tenant)
            if wrapped is None:
                if not create:
                    return None
                _, fresh = await self.keyring.generate_data_key({"tenant": tenant})
                # Two processes may race here: the store keeps the first one.
                wrapped = await self.data_keys.add_data_key(tenant, fresh)
            key = await self.keyring.decrypt_data_key(wrapped, {"tenant": tenant})
            self._cache[tenant] = key
            return key

    async def get_credentials(self, tenant: str, provider: str) -> dict[str, Any] | None:
        """Decrypted settings, or None."""
        sealed = await self.plain.get_credentials(tenant, provider)
        if sealed is None:
            return None
        if sealed.get("scheme") != SCHEME:
            raise KeyRingError(f"settings of {provider!r} for {tenant!r} are not encrypted")
        key = await self._data_key(tenant, create=False)
        if key is None:
            raise KeyRingError(f"tenant {tenant!r} has sealed settings but no data key")
        try:
            nonce = base64.b64decode(sealed["nonce"], validate=True)
            ciphertext = base64.b64decode(sealed["ciphertext"], validate=True)
            plain = AESGCM(key).decrypt(nonce, ciphertext, _aad(tenant, provider))
        except (InvalidTag, KeyError, binascii.Error, ValueError):
            raise KeyRingError(
                f"settings of {provider!r} do not decrypt for tenant {tenant!r}"
            ) from None
        value: dict[str, Any] = json.loads(plain)
        return value

    async def put_credentials(self, tenant: str, provider: str, config: dict[str, Any]) -> None:
        """Seal and store settings."""
        key = await self._data_key(tenant, create=True)
        assert key is not None
        nonce = os.urandom(12)
        ciphertext = AESGCM(key).encrypt(nonce, canonical_json(config), _aad(tenant, provider))
        await self.plain.put_credentials(
            tenant,
            provider,
            {
                "scheme": SCHEME,
                "nonce": base64.b64encode(nonce).decode(),
                "ciphertext": base64.b64encode(ciphertext).decode(),
            },
        )

    async def seal(self, tenant: str, purpose: str, value: Mapping[str, Any]) -> dict[str, str]:
        """``value`` sealed with the tenant's data key, bound to tenant and ``purpose``."""
        key = await self._data_key(tenant, create=True)
        assert key is not None
        nonce = os.urandom(12)
        ciphertext = AESGCM(key).encrypt(
            nonce, canonical_json(dict(value)), _purpose_aad(tenant, purpose)
        )
        return {
            "scheme": SCHEME,
            "nonce": base64.b64encode(nonce).decode(),
            "ciphertext": base64.b64encode(ciphertext).decode(),
        }

    async def unseal(self, tenant: str, purpose: str, sealed: Mapping[str, str]) -> dict[str, Any]:
        """What ``seal`` sealed; KeyRingError unless it opens for this tenant and purpose."""
        if sealed.get("scheme") != SCHEME:
            raise KeyRingError(f"{purpose!r} of {tenant!r} is not sealed")
        key = await self._data_key(tenant, create=False)
        if key is None:
            raise KeyRingError(f"tenant {tenant!r} has sealed data but no data key")
        try:
            nonce = base64.b64decode(sealed["nonce"], validate=True)
            ciphertext = base64.b64decode(sealed["ciphertext"], validate=True)
            plain = AESGCM(key).decrypt(nonce, ciphertext, _purpose_aad(tenant, purpose))
        except (InvalidTag, KeyError, binascii.Error, ValueError):
            raise KeyRingError(f"{purpose!r} does not open for tenant {tenant!r}") from None
        value: dict[str, Any] = json.loads(plain)
        return value

    async def list_credentials(self, tenant: str) -> list[str]:
        """The providers a tenant has configured."""
        return await self.plain.list_credentials(tenant)

    async def close(self) -> None:
        """Close the key ring if it was opened."""
        if self._keyring is not None:
            await self._keyring.close()

    async def rotate_master(self) -> Rotation:
        """Re-wrap every data key under the key ring's primary master key."""
        keyring = self.keyring
        primary = keyring.primary_key_id()
        rewrapped = current = 0
        for tenant, wrapped in await self.data_keys.list_data_keys():
            if keyring.key_id_of(wrapped) == primary:
                current += 1
                continue
            fresh = await keyring.rewrap(wrapped, {"tenant": tenant})
            # Compare-and-swap: a concurrent rotation may have done it already.
            if await self.data_keys.replace_data_key(tenant, wrapped, fresh):
                rewrapped += 1
            else:
                current += 1
        return Rotation(rewrapped, current, primary)
