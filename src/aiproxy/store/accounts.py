"""Upstream account types, their credentials at rest, and the pool version.

The admin API writes accounts; the gateway keeps an in-memory view of the pool. Every
admin change to accounts, groups, proxies or error rules bumps `POOL_VERSION` in shared
state, and each gateway instance reloads its view when it sees a new version.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import orjson

from ..security.secretbox import SecretBox
from .state import SharedState, StateUnavailable, warn_unavailable

log = logging.getLogger(__name__)

POOL_VERSION = "pool:version"

# Fields an account's credential blob may hold; all of them are secrets.
CREDENTIAL_FIELDS = ("api_key", "api_secret", "access_token", "refresh_token", "id_token", "session_key")


@dataclass(frozen=True, slots=True)
class AccountType:
    name: str
    family: str  # the wire protocol: claude | openai | gemini | responses
    default_base_url: str
    needs: tuple[str, ...]  # credential fields that must be present
    description: str


ACCOUNT_TYPES: dict[str, AccountType] = {
    t.name: t
    for t in (
        AccountType(
            "claude-official", "claude", "https://api.anthropic.com", ("api_key",), "Anthropic API key"
        ),
        AccountType(
            "claude-console",
            "claude",
            "https://api.anthropic.com",
            ("api_key",),
            "Anthropic-compatible endpoint with a custom base URL",
        ),
        AccountType("openai", "openai", "https://api.openai.com", ("api_key",), "OpenAI API key"),
        AccountType(
            "azure-openai",
            "openai",
            "",
            ("api_key",),
            "Azure OpenAI: endpoint, deployment and api-version",
        ),
        AccountType(
            "gemini",
            "gemini",
            "https://generativelanguage.googleapis.com",
            ("api_key",),
            "Google AI Studio key",
        ),
        AccountType(
            "openai-responses",
            "responses",
            "https://chatgpt.com/backend-api/codex",
            ("api_key",),
            "Responses API (Codex) upstream",
        ),
    )
}

# Which account families can serve each model platform of the model table.
PLATFORM_FAMILIES = {"claude-official": "claude", "openai": "openai", "gemini": "gemini"}


def encrypt_credentials(box: SecretBox, credentials: dict[str, Any]) -> str | None:
    kept = {k: v for k, v in credentials.items() if k in CREDENTIAL_FIELDS and v}
    return box.encrypt(orjson.dumps(kept).decode()) if kept else None


def decrypt_credentials(box: SecretBox, stored: str | None) -> dict[str, str]:
    if not stored:
        return {}
    return dict(orjson.loads(box.decrypt(stored)))


def mask_secret(value: str) -> str:
    """What the console shows of a credential: enough to recognise it, never enough to use it."""
    if len(value) <= 8:
        return "***"
    return f"{value[:4]}***{value[-4:]}"


async def bump_pool_version(state: SharedState) -> bool:
    """Tell every instance to reload its account pool; False when shared state is down.

    A change saved in the database is never reported as failed for that: instances that could
    not check the version during the outage reload once shared state is back.
    """
    try:
        await state.incr(POOL_VERSION)
    except StateUnavailable as exc:
        warn_unavailable(log, "pool change saved; instances reload it once shared state is back", exc)
        return False
    return True
