"""AES-256-GCM encryption for secrets stored in the database.

Stored form: ``v1:<base64url(nonce || ciphertext+tag)>``. The key is derived from
`AIPROXY_SECRET_KEY` (or the generated one in the data dir) with SHA-256, so any
string the operator chooses works as a key.
"""

from __future__ import annotations

import base64
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_PREFIX = "v1:"
_NONCE_BYTES = 12


class SecretBoxError(Exception):
    """A stored secret could not be decrypted (wrong key or corrupted value)."""


class SecretBox:
    def __init__(self, key_material: str) -> None:
        self._aead = AESGCM(hashlib.sha256(key_material.encode()).digest())

    def encrypt(self, plaintext: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), None)
        return _PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def decrypt(self, stored: str) -> str:
        if not stored.startswith(_PREFIX):
            raise SecretBoxError("unknown secret format")
        try:
            raw = base64.urlsafe_b64decode(stored[len(_PREFIX) :])
            return self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], None).decode()
        except (InvalidTag, ValueError) as exc:
            raise SecretBoxError("secret cannot be decrypted with the configured key") from exc

    def encrypt_optional(self, plaintext: str | None) -> str | None:
        return self.encrypt(plaintext) if plaintext else None

    def decrypt_optional(self, stored: str | None) -> str | None:
        return self.decrypt(stored) if stored else None
