"""The OpenAI Responses API: openai-responses accounts (Codex) and plain OpenAI accounts on that route."""

from __future__ import annotations

from typing import Any

import orjson

from ..errors import RESPONSES
from ..pool import PoolAccount
from .base import _FORWARD_ANY, Provider, UpstreamRequest, vendor_root


class ResponsesProvider(Provider):
    wire = RESPONSES
    forward = _FORWARD_ANY | {
        b"openai-beta",
        b"originator",
        b"version",
        b"session_id",
        b"session-id",
        b"thread-id",
        b"conversation_id",
        b"x-client-request-id",
    }
    forward_prefixes = (b"x-stainless-", b"x-codex-")
    default_probe_model = "gpt-5-codex"

    def target(self, account: PoolAccount, request: UpstreamRequest, headers: dict[str, str]) -> str:
        creds = account.credentials
        headers["authorization"] = f"Bearer {creds.get('api_key') or creds.get('access_token', '')}"
        if account.family == RESPONSES:
            url = account.base_url + "/responses"  # base_url is the prefix /responses is appended to
        else:
            url = vendor_root(account.base_url, "/v1") + "/v1/responses"
        if "chatgpt.com" in account.base_url:
            headers["openai-beta"] = "responses=experimental"
            if account.organization_id:
                headers["chatgpt-account-id"] = account.organization_id
        return url

    def probe_body(self, model: str, message: str) -> bytes:
        return orjson.dumps({"model": model, "input": message, "stream": False})

    def reply_text(self, data: Any) -> str:
        try:
            return "".join(
                c.get("text", "")
                for item in data["output"]
                if item.get("type") == "message"
                for c in item["content"]
            )
        except (KeyError, TypeError, AttributeError):
            return ""
