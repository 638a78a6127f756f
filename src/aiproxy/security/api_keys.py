"""User API keys: `sk-` + 64 hex characters, looked up by SHA-256."""

from __future__ import annotations

import hashlib
import re
import secrets

KEY_PREFIX = "sk-"
_KEY_RE = re.compile(r"^sk-[0-9a-f]{64}$")


def generate_api_key() -> str:
    return KEY_PREFIX + secrets.token_hex(32)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def looks_like_api_key(key: str) -> bool:
    return bool(_KEY_RE.match(key))


def display_prefix(key: str) -> str:
    """What lists show instead of the key: `sk-` and the next 8 characters."""
    return key[:11] + "..."
