"""Anthropic Messages: claude-official, claude-console and claude-ccr accounts, by key or OAuth.

A subscription (OAuth) account talks to the same API with a Bearer token, and the upstream
serves it only when the request looks like Claude Code: the oauth beta among the
`anthropic-beta` values, Claude Code's identity headers, and Claude Code's system prompt as
the first system block. Claude Code itself sends all of that; for any other client the
relay adds what is missing (values in the `oauth` runtime configs).
"""

from __future__ import annotations

from typing import Any

import orjson

from ..errors import CLAUDE
from ..pool import PoolAccount
from .base import _FORWARD_ANY, Provider, UpstreamRequest, retry_after, vendor_root

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_OAUTH_BETAS = "claude-code-20250219,oauth-2025-04-20"
DEFAULT_USER_AGENT = "claude-cli/2.1.197 (external, cli)"
DEFAULT_SYSTEM_PROMPT = "You are Claude Code, Anthropic's official CLI for Claude."


def _config(request: UpstreamRequest, key: str, default: str) -> str:
    return str(request.configs.get(key)) if request.configs is not None else default


def is_claude_code(client_headers: dict[bytes, bytes]) -> bool:
    return client_headers.get(b"user-agent", b"").startswith(b"claude-cli/")


def merged_betas(required: str, sent: str) -> str:
    """The required betas first, then the client's, each once."""
    seen: dict[str, None] = {}
    for value in (*required.split(","), *sent.split(",")):
        value = value.strip()
        if value:
            seen.setdefault(value, None)
    return ",".join(seen)


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
        creds = account.credentials
        if creds.get("api_key"):
            headers["x-api-key"] = creds["api_key"]
            if request.query:
                url += f"?{request.query}"  # Claude Code sends ?beta=true
        elif creds.get("access_token"):
            self._oauth_headers(request, headers, creds["access_token"])
            url += "?beta=true"  # as Claude Code calls it
        headers.setdefault("anthropic-version", ANTHROPIC_VERSION)
        return url

    def _oauth_headers(self, request: UpstreamRequest, headers: dict[str, str], token: str) -> None:
        headers["authorization"] = f"Bearer {token}"
        required = _config(request, "claude_oauth_betas", DEFAULT_OAUTH_BETAS)
        headers["anthropic-beta"] = merged_betas(required, headers.get("anthropic-beta", ""))
        if not is_claude_code(request.client_headers):
            headers["user-agent"] = _config(request, "claude_oauth_user_agent", DEFAULT_USER_AGENT)
            headers["x-app"] = "cli"
            headers["anthropic-dangerous-direct-browser-access"] = "true"

    def body_changes(
        self, account: PoolAccount, request: UpstreamRequest, payload: dict[str, Any]
    ) -> dict[str, Any]:
        changes = super().body_changes(account, request, payload)
        # Claude Code sends its own system prompt (its identity, its billing block): left as it is.
        if account.oauth and not request.count_tokens and not is_claude_code(request.client_headers):
            prompt = _config(request, "claude_code_system_prompt", DEFAULT_SYSTEM_PROMPT)
            system = _with_identity(payload.get("system"), prompt)
            if system is not None:
                changes["system"] = system
        return changes

    def quota(self, status: int, headers: dict[str, str], error: bytes | None) -> dict[str, Any] | None:
        overall = headers.get("anthropic-ratelimit-unified-status")
        if overall is None:
            return None
        snapshot: dict[str, Any] = {"kind": "claude_unified", "status": overall}
        reset = _epoch(headers.get("anthropic-ratelimit-unified-reset"))
        if reset:
            snapshot["resets_at"] = reset
        claim = headers.get("anthropic-ratelimit-unified-representative-claim")
        if claim:
            snapshot["representative_claim"] = claim
        for window, name in _UNIFIED_WINDOWS:
            prefix = f"anthropic-ratelimit-unified-{window}-"
            entry: dict[str, Any] = {}
            if prefix + "status" in headers:
                entry["status"] = headers[prefix + "status"]
            if (at := _epoch(headers.get(prefix + "reset"))) is not None:
                entry["resets_at"] = at
            if (used := _fraction(headers.get(prefix + "utilization"))) is not None:
                entry["utilization"] = used
            if entry:
                snapshot[name] = entry
        return snapshot

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
        return messages_text(data)


def messages_text(data: Any) -> str:
    """The text blocks of a whole Messages answer."""
    try:
        return "".join(b.get("text", "") for b in data["content"] if b.get("type") == "text")
    except (KeyError, TypeError, AttributeError):
        return ""


_UNIFIED_WINDOWS = (
    ("5h", "five_hour"),
    ("7d", "seven_day"),
    ("7d_oi", "seven_day_oi"),
    ("overage", "overage"),
)


def _epoch(value: str | None) -> int | None:
    """Unix seconds (milliseconds tolerated)."""
    if not value or not value.strip().isdigit():
        return None
    number = int(value)
    return number // 1000 if number > 100_000_000_000 else number


def _fraction(value: str | None) -> float | None:
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and 0.0 <= number <= 1.0 else None


def _with_identity(system: Any, prompt: str) -> list[dict[str, Any]] | None:
    """The system blocks with Claude Code's prompt first; None when it already is first."""
    identity = {"type": "text", "text": prompt}
    if system is None or system == "":
        return [identity]
    if isinstance(system, str):
        return None if system.startswith(prompt) else [identity, {"type": "text", "text": system}]
    if isinstance(system, list):
        first = system[0] if system else None
        if isinstance(first, dict) and str(first.get("text", "")).startswith(prompt):
            return None
        return [identity, *system]
    return None  # an unexpected shape: the upstream will say what is wrong with it
