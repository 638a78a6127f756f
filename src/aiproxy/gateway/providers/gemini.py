"""Google Gemini (generativelanguage): native generate, stream and countTokens paths."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson

from ..errors import GEMINI
from ..pool import PoolAccount
from .base import _FORWARD_ANY, Provider, UpstreamRequest, vendor_root


class GeminiProvider(Provider):
    wire = GEMINI
    forward = _FORWARD_ANY | {b"x-goog-api-client"}
    default_probe_model = "gemini-2.5-flash"

    def target(self, account: PoolAccount, request: UpstreamRequest, headers: dict[str, str]) -> str:
        root = vendor_root(account.base_url, "/v1beta", "/v1")
        url = f"{root}/{request.gemini_version}/models/{quote(request.model)}:{request.gemini_action}"
        if request.query:
            url += f"?{request.query}"
        headers["x-goog-api-key"] = account.credentials.get("api_key", "")
        return url

    def body_changes(
        self, account: PoolAccount, request: UpstreamRequest, payload: dict[str, Any]
    ) -> dict[str, Any]:
        return {}  # the model is in the URL

    def probe_body(self, model: str, message: str) -> bytes:
        body = {
            "contents": [{"role": "user", "parts": [{"text": message}]}],
            "generationConfig": {"maxOutputTokens": 64},
        }
        return orjson.dumps(body)

    def reply_text(self, data: Any) -> str:
        try:
            return "".join(p.get("text", "") for p in data["candidates"][0]["content"]["parts"])
        except (KeyError, IndexError, TypeError, AttributeError):
            return ""
