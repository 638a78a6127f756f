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
from sqlalchemy.ext.asyncio import AsyncSession

from ..security.secretbox import SecretBox
from .state import SharedState, StateUnavailable, warn_unavailable

log = logging.getLogger(__name__)

POOL_VERSION = "pool:version"

# Fields an account's credential blob may hold; all of them are secrets.
CREDENTIAL_FIELDS = (
    "api_key",
    "api_secret",
    "access_token",
    "refresh_token",
    "id_token",
    "session_key",
    "session_token",
)

# An account authenticates with one complete set of credentials: an API key, or OAuth tokens.
API_KEY: tuple[str, ...] = ("api_key",)
OAUTH: tuple[str, ...] = ("access_token",)


@dataclass(frozen=True, slots=True)
class AccountType:
    name: str
    family: str  # the wire protocol clients reach it by: claude | openai | gemini | responses
    default_base_url: str
    accepts: tuple[tuple[str, ...], ...]  # credential sets, any one of which must be complete
    description: str
    oauth: str = ""  # the OAuth flow that onboards it (claude | openai | gemini), "" = none
    settings: tuple[str, ...] = ()  # account columns that must be set (base_url, region, ...)

    def missing(self, credentials: dict[str, str]) -> tuple[str, ...]:
        """The fields of the nearest credential set still missing; () when one set is complete."""
        gaps = [tuple(f for f in wanted if not credentials.get(f)) for wanted in self.accepts]
        return min(gaps, key=len) if gaps else ()

    def uses_oauth(self, credentials: dict[str, str]) -> bool:
        """Bearer tokens rather than a key: the account is a subscription reached by OAuth."""
        return bool(self.oauth) and not credentials.get("api_key") and bool(credentials.get("access_token"))


ACCOUNT_TYPES: dict[str, AccountType] = {
    t.name: t
    for t in (
        AccountType(
            "claude-official",
            "claude",
            "https://api.anthropic.com",
            (API_KEY, OAUTH),
            "Anthropic API key, or a Claude subscription (OAuth or setup token)",
            oauth="claude",
        ),
        AccountType(
            "claude-console",
            "claude",
            "https://api.anthropic.com",
            (API_KEY, OAUTH),
            "Anthropic-compatible endpoint with a custom base URL",
            oauth="claude",
        ),
        AccountType(
            "claude-ccr",
            "claude",
            "",
            (API_KEY,),
            "Claude Code Router (or another Anthropic-compatible router): base URL and key",
            settings=("base_url",),
        ),
        AccountType(
            "bedrock",
            "claude",
            "",
            (("api_key", "api_secret"), OAUTH),
            "AWS Bedrock: access key id + secret (+ session token) and region, or a Bedrock API key",
            settings=("region",),
        ),
        AccountType("openai", "openai", "https://api.openai.com", (API_KEY,), "OpenAI API key"),
        AccountType(
            "azure-openai",
            "openai",
            "",
            (API_KEY,),
            "Azure OpenAI: endpoint, deployment and api-version",
            settings=("base_url", "api_version", "deployment"),
        ),
        AccountType(
            "gemini",
            "gemini",
            "https://generativelanguage.googleapis.com",
            (API_KEY, OAUTH),
            "Google AI Studio key, or Google OAuth through Code Assist",
            oauth="gemini",
        ),
        AccountType(
            "openai-responses",
            "responses",
            "https://chatgpt.com/backend-api/codex",
            (API_KEY, OAUTH),
            "Responses API upstream: an API key, or a ChatGPT subscription (Codex OAuth)",
            oauth="openai",
        ),
    )
}

# Account statuses. A cooldown (rate_limited, overloaded) ends by itself, and so does an admin's
# `unavailable` mark (taken out of rotation for a set time, see account_marks.py); all three
# keep their end in `rate_limited_until` / `overloaded_until`, and without one they last until an
# admin changes them. invalid and token_expired wait for an admin (token_expired: the refresh
# token was refused, log in again).
ACCOUNT_STATUSES = ("valid", "rate_limited", "overloaded", "unavailable", "invalid", "token_expired")
TIMED_STATUSES = ("rate_limited", "overloaded", "unavailable")

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


async def commit_pool_change(session: AsyncSession, state: SharedState) -> None:
    """Commit a change the account pool snapshot depends on (accounts, groups, prices, rules, the
    client filter, proxies), then announce it: in this order, so an instance that reloads on the
    announcement always finds the change."""
    await session.commit()
    await bump_pool_version(state)
