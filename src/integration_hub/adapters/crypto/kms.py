"""A key ring on AWS KMS: data keys generated and unwrapped by a KMS key.

KMS binds the encryption context (the tenant id) to every ciphertext, so a
wrapped data key moved to another tenant does not decrypt, exactly like the
local key ring. KMS rotates the key material behind a key id by itself;
``rewrap`` (ReEncrypt) moves data keys to another KMS key when the
configured key id changes. Calls go through aiobotocore, never blocking the
event loop; the client is created on first use and reused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from contextlib import AsyncExitStack
from typing import Any

from aiobotocore.session import get_session  # type: ignore[import-untyped]
from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from integration_hub.adapters.crypto.local import KeyRingError

VERSION = b"\x02"


class KmsKeyRing:
    """The KeyRing port on one KMS key (id, ARN or alias)."""

    def __init__(
        self,
        key_id: str,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
    ) -> None:
        self.key_id = key_id
        self._client_args: dict[str, Any] = {
            "region_name": region,
            "endpoint_url": endpoint_url,
            "aws_access_key_id": access_key_id,
            "aws_secret_access_key": secret_access_key,
        }
        self._client: Any = None
        self._stack: AsyncExitStack | None = None
        self._lock = asyncio.Lock()

    async def _kms(self) -> Any:
        async with self._lock:
            if self._client is None:
                stack = AsyncExitStack()
                self._client = await stack.enter_async_context(
                    get_session().create_client("kms", **self._client_args)
                )
                self._stack = stack
            return self._client

    def primary_key_id(self) -> str:
        """The KMS key that wraps new data keys."""
        return self.key_id

    def key_id_of(self, wrapped: bytes) -> str:
        """The KMS key a blob was wrapped with (recorded beside the KMS ciphertext)."""
        return _split(wrapped)[0]

    async def generate_data_key(self, context: Mapping[str, str]) -> tuple[bytes, bytes]:
        """GenerateDataKey (AES-256) bound to ``context``."""
        try:
            kms = await self._kms()
            answer = await kms.generate_data_key(
                KeyId=self.key_id, KeySpec="AES_256", EncryptionContext=dict(context)
            )
        except (ClientError, BotoCoreError) as exc:
            raise KeyRingError(f"KMS GenerateDataKey failed: {_reason(exc)}") from None
        return bytes(answer["Plaintext"]), _join(self.key_id, bytes(answer["CiphertextBlob"]))

    async def decrypt_data_key(self, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        """Decrypt; KMS refuses when ``context`` differs from the one at wrapping."""
        key_id, blob = _split(wrapped)
        try:
            kms = await self._kms()
            answer = await kms.decrypt(
                CiphertextBlob=blob, KeyId=key_id, EncryptionContext=dict(context)
            )
        except (ClientError, BotoCoreError) as exc:
            raise KeyRingError(f"KMS Decrypt failed: {_reason(exc)}") from None
        return bytes(answer["Plaintext"])

    async def rewrap(self, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        """ReEncrypt under the configured key without the plaintext leaving KMS."""
        key_id, blob = _split(wrapped)
        try:
            kms = await self._kms()
            answer = await kms.re_encrypt(
                CiphertextBlob=blob,
                SourceKeyId=key_id,
                SourceEncryptionContext=dict(context),
                DestinationKeyId=self.key_id,
                DestinationEncryptionContext=dict(context),
            )
        except (ClientError, BotoCoreError) as exc:
            raise KeyRingError(f"KMS ReEncrypt failed: {_reason(exc)}") from None
        return _join(self.key_id, bytes(answer["CiphertextBlob"]))

    async def close(self) -> None:
        """Close the client."""
        async with self._lock:
            stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()


def _join(key_id: str, blob: bytes) -> bytes:
    raw = key_id.encode()
    if len(raw) > 0xFFFF:
        raise KeyRingError("KMS key id too long")
    return VERSION + len(raw).to_bytes(2, "big") + raw + blob


def _split(wrapped: bytes) -> tuple[str, bytes]:
    if len(wrapped) < 3 or wrapped[:1] != VERSION:
        raise KeyRingError("not a KMS-wrapped data key")
    size = int.from_bytes(wrapped[1:3], "big")
    return wrapped[3 : 3 + size].decode(errors="replace"), wrapped[3 + size :]


def _reason(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'error')}: {error.get('Message', '')}"
    return type(exc).__name__
