"""OAuth logins of subscription accounts (Claude, Codex/ChatGPT, Gemini): onboarding and refresh.

`grants.refresh_grant` is the token refresher's entry point; `onboarding` backs the admin routes
in `api/admin/oauth.py`. Vendor URLs are settings; the vendors' public client ids, redirect URIs
and scopes are in `clients`. See docs/oauth-accounts.md.
"""

from __future__ import annotations

from .clients import CLAUDE, FLOWS, GEMINI, OPENAI
from .errors import OAuthError
from .grants import TokenGrant, exchange_code, refresh_grant

__all__ = [
    "CLAUDE",
    "FLOWS",
    "GEMINI",
    "OPENAI",
    "OAuthError",
    "TokenGrant",
    "exchange_code",
    "refresh_grant",
]
