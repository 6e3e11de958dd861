"""Sealed provider settings, wrapped data keys, and the key ring that wraps them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class CredentialStore(Protocol):
    """Per-tenant provider configuration and credentials."""

    async def get_credentials(self, tenant: str, provider: str) -> dict[str, Any] | None:
        """A tenant's configuration of one provider."""
        ...

    async def put_credentials(self, tenant: str, provider: str, config: dict[str, Any]) -> None:
        """Create or replace a tenant's configuration of one provider."""
        ...

    async def list_credentials(self, tenant: str) -> list[str]:
        """The providers a tenant has configured."""
        ...


class DataKeyStore(Protocol):
    """Wrapped per-tenant data keys (only ever stored wrapped by a KeyRing)."""

    async def get_data_key(self, tenant: str) -> bytes | None:
        """The tenant's wrapped data key."""
        ...

    async def add_data_key(self, tenant: str, wrapped: bytes) -> bytes:
        """Store a wrapped key unless the tenant has one; the one stored."""
        ...

    async def list_data_keys(self) -> list[tuple[str, bytes]]:
        """Every (tenant, wrapped key)."""
        ...

    async def replace_data_key(self, tenant: str, old: bytes, new: bytes) -> bool:
        """Swap a wrapped key if it is still ``old``; whether it was."""
        ...


class SecretStore(CredentialStore, DataKeyStore, Protocol):
    """What a backend stores for secrets: sealed settings and wrapped data keys."""


class SealedData(Protocol):
    """Seals small values with a tenant's data key (envelope encryption, ADR 0008).

    ``purpose`` binds the sealed value to what it is for (for example
    ``webhook:ep_...``): it is part of the authenticated data, so a value
    sealed for one purpose or tenant does not open as another's.
    """

    async def seal(self, tenant: str, purpose: str, value: Mapping[str, Any]) -> dict[str, str]:
        """The sealed form of ``value`` (JSON-serialisable), safe to store."""
        ...

    async def unseal(self, tenant: str, purpose: str, sealed: Mapping[str, str]) -> dict[str, Any]:
        """The value again; KeyRingError if it does not open for this tenant and purpose."""
        ...


class KeyRing(Protocol):
    """Wraps data keys under master keys (local key file, env var, or AWS KMS)."""

    def primary_key_id(self) -> str:
        """The master key that wraps new data keys."""
        ...

    def key_id_of(self, wrapped: bytes) -> str:
        """The master key that wrapped ``wrapped``."""
        ...

    async def generate_data_key(self, context: Mapping[str, str]) -> tuple[bytes, bytes]:
        """A new data key as (plaintext, wrapped), bound to ``context``."""
        ...

    async def decrypt_data_key(self, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        """Unwrap a data key; fails unless ``context`` is the one it was wrapped with."""
        ...

    async def rewrap(self, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        """The same data key wrapped under the primary master key."""
        ...

    async def close(self) -> None:
        """Release clients."""
        ...
