"""A key ring of local master keys: from ``IHUB_MASTER_KEY`` or a key file.

A data key is wrapped with AES-256-GCM under the primary master key, with the
encryption context (the tenant id) as associated data, so a wrapped key moved
to another tenant does not unwrap. The wrapped blob names its master key, so
after a rotation the old keys still unwrap what they wrapped until everything
is re-wrapped.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from integration_hub.domain.errors import HubError
from integration_hub.domain.models import canonical_json

VERSION = b"\x01"
NONCE_BYTES = 12
KEY_BYTES = 32


class KeyRingError(HubError):
    """The master key material is missing, malformed or cannot unwrap this key."""


def new_key_id() -> str:
    """A short random master key id."""
    return "mk-" + secrets.token_hex(4)


def parse_env_keys(value: str) -> tuple[str, dict[str, bytes]]:
    """``kid:base64[,kid:base64...]`` (first is primary) or one bare base64 key."""
    keys: dict[str, bytes] = {}
    primary = ""
    for i, item in enumerate(part.strip() for part in value.split(",") if part.strip()):
        kid, sep, material = item.rpartition(":")
        kid = kid if sep else "env"
        keys[kid] = _decode_key(material, f"IHUB_MASTER_KEY entry {i + 1}")
        primary = primary or kid
    if not keys:
        raise KeyRingError("IHUB_MASTER_KEY is empty")
    return primary, keys


def _decode_key(material: str, where: str) -> bytes:
    try:
        raw = base64.b64decode(material, validate=True)
    except (binascii.Error, ValueError):
        raise KeyRingError(f"{where} is not base64") from None
    if len(raw) != KEY_BYTES:
        raise KeyRingError(f"{where} must be {KEY_BYTES} bytes (AES-256), not {len(raw)}")
    return raw


class KeyFile:
    """A JSON key file ``{"primary": kid, "keys": {kid: base64}}``, mode 0600."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def exists(self) -> bool:
        """Whether the file is there."""
        return self.path.exists()

    def load(self) -> tuple[str, dict[str, bytes]]:
        """Primary id and every key; refuses a file readable by others."""
        mode = stat.S_IMODE(self.path.stat().st_mode)
        if mode & 0o077:
            raise KeyRingError(
                f"master key file {self.path} is accessible by others (mode {mode:o}); chmod 600 it"
            )
        try:
            data = json.loads(self.path.read_text())
            keys = {kid: _decode_key(v, f"key {kid}") for kid, v in data["keys"].items()}
            primary = str(data["primary"])
        except (ValueError, KeyError, TypeError, AttributeError):
            raise KeyRingError(f"master key file {self.path} is malformed") from None
        if primary not in keys:
            raise KeyRingError(f"master key file {self.path} names a missing primary key")
        return primary, keys

    def save(self, primary: str, keys: Mapping[str, bytes]) -> None:
        """Write atomically with mode 0600 (created so, never widened)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps(
            {"primary": primary, "keys": {k: base64.b64encode(v).decode() for k, v in keys.items()}}
        )
        tmp = self.path.with_name(self.path.name + f".{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)

    def create(self) -> str:
        """A new file with one fresh key; its id."""
        kid = new_key_id()
        self.save(kid, {kid: AESGCM.generate_key(bit_length=256)})
        return kid

    def create_if_absent(self) -> bool:
        """Create the file unless it exists; True if this call created it.

        Safe when several processes start at once: the file is linked into
        place, which fails if another process got there first, so nobody
        overwrites a key that may already wrap data keys.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        staging = KeyFile(self.path.with_name(self.path.name + f".{secrets.token_hex(4)}.new"))
        staging.create()
        try:
            os.link(staging.path, self.path)
        except FileExistsError:
            return False
        finally:
            staging.path.unlink()
        return True


class LocalKeyRing:
    """The KeyRing port on local master keys."""

    def __init__(
        self, primary: str, keys: Mapping[str, bytes], *, key_file: KeyFile | None = None
    ) -> None:
        if primary not in keys:
            raise KeyRingError("the primary master key is not in the key ring")
        self.primary = primary
        self.keys = dict(keys)
        self.key_file = key_file

    @classmethod
    def from_file(cls, key_file: KeyFile) -> LocalKeyRing:
        """A key ring that re-reads its file when it meets a key id it does not know."""
        primary, keys = key_file.load()
        return cls(primary, keys, key_file=key_file)

    def primary_key_id(self) -> str:
        """The master key that wraps new data keys."""
        return self.primary

    def _key(self, kid: str) -> bytes:
        if kid not in self.keys and self.key_file is not None:
            # Another process rotated the master key: pick up the new file.
            self.primary, self.keys = self.key_file.load()
        try:
            return self.keys[kid]
        except KeyError:
            raise KeyRingError(f"master key {kid!r} is not in the key ring") from None

    async def generate_data_key(self, context: Mapping[str, str]) -> tuple[bytes, bytes]:
        """A new data key, in plain and wrapped under the primary master key."""
        data_key = AESGCM.generate_key(bit_length=256)
        return data_key, self._wrap(data_key, context)

    async def decrypt_data_key(self, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        """Unwrap; KeyRingError if the context or the master key does not match."""
        kid, nonce, sealed = _split(wrapped)
        try:
            return AESGCM(self._key(kid)).decrypt(nonce, sealed, canonical_json(dict(context)))
        except InvalidTag:
            raise KeyRingError("the data key does not belong to this context") from None

    async def rewrap(self, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        """The same data key, wrapped under the current primary master key."""
        return self._wrap(await self.decrypt_data_key(wrapped, context), context)

    def key_id_of(self, wrapped: bytes) -> str:
        """Which master key wrapped this blob."""
        return _split(wrapped)[0]

    async def close(self) -> None:
        """Nothing to release."""

    def _wrap(self, data_key: bytes, context: Mapping[str, str]) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(self._key(self.primary)).encrypt(
            nonce, data_key, canonical_json(dict(context))
        )
        kid = self.primary.encode()
        return VERSION + bytes([len(kid)]) + kid + nonce + sealed


def _split(wrapped: bytes) -> tuple[str, bytes, bytes]:
    if len(wrapped) < 2 or wrapped[:1] != VERSION:
        raise KeyRingError("not a wrapped data key of this version")
    size = wrapped[1]
    kid = wrapped[2 : 2 + size].decode(errors="replace")
    rest = wrapped[2 + size :]
    return kid, rest[:NONCE_BYTES], rest[NONCE_BYTES:]
