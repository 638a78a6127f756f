"""Anthropic Messages: claude-official and claude-console accounts."""

from __future__ import annotations

from typing import Any

import orjson

from ..errors import CLAUDE
from ..pool import PoolAccount
from .base import _FORWARD_ANY, Provider, UpstreamRequest, retry_after, vendor_root

ANTHROPIC_VERSION = "2023-06-01"


class AnthropicProvider(Provider):
    wire = CLAUDE
    forward = _FORWARD_ANY | {
        b"anthropic-version",
        b"anthropic-beta",
        b"anthropic-dangerous-direct-browser-access",
        b"x-app",
        b"x-claude-code-session-id",
    }
    forward_prefixes = (b"x-stainless-",)
    default_probe_model = "claude-haiku-4-5"

    def target(self, account: PoolAccount, request: UpstreamRequest, headers: dict[str, str]) -> str:
        path = "/v1/messages/count_tokens" if request.count_tokens else "/v1/messages"
        url = vendor_root(account.base_url, "/v1") + path
        if request.query:
            url += f"?{request.query}"  # Claude Code sends ?beta=true
        creds = account.credentials
        if creds.get("api_key"):
            headers["x-api-key"] = creds["api_key"]
        elif creds.get("access_token"):
            headers["authorization"] = f"Bearer {creds['access_token']}"
        headers.setdefault("anthropic-version", ANTHROPIC_VERSION)
        return url

    def rejected(self, headers: dict[str, str]) -> bool:
        # Subscription quotas: the unified limiter may refuse with a success status.
        return headers.get("anthropic-ratelimit-unified-status") == "rejected"

    def resets_at(self, headers: dict[str, str], body: bytes, now: float) -> float | None:
        unified = headers.get("anthropic-ratelimit-unified-reset")
        if unified and unified.strip().isdigit():
            return float(unified)
        return retry_after(headers, now)

    def probe_body(self, model: str, message: str) -> bytes:
        body = {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": message}]}
        return orjson.dumps(body)

    def reply_text(self, data: Any) -> str:
        try:
            return "".join(b.get("text", "") for b in data["content"] if b.get("type") == "text")
        except (KeyError, TypeError, AttributeError):
            return ""
