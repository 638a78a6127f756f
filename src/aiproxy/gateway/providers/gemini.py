"""Google Gemini (generativelanguage): native generate, stream and countTokens paths."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import orjson

from ..errors import GEMINI
from ..pool import PoolAccount
from .base import _FORWARD_ANY, Provider, UpstreamRequest, retry_after, vendor_root

GEMINI_API_ROOT = "https://generativelanguage.googleapis.com"


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

    def quota(self, status: int, headers: dict[str, str], error: bytes | None) -> dict[str, Any] | None:
        """RESOURCE_EXHAUSTED: which quota (ErrorInfo.reason) and when it resets."""
        if error is None or status != 429:
            return None
        try:
            details = orjson.loads(error)["error"]["details"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            details = []
        reasons = [d.get("reason") for d in details if isinstance(d, dict) and d.get("reason")]
        snapshot: dict[str, Any] = {"kind": "gemini", "status": "RESOURCE_EXHAUSTED"}
        if reasons:
            snapshot["reason"] = reasons[0]  # QUOTA_EXHAUSTED (daily/hard) or RATE_LIMIT_EXCEEDED
        resets = self.resets_at(headers, error, time.time())
        if resets:
            snapshot["resets_at"] = int(resets)
        return snapshot

    def resets_at(self, headers: dict[str, str], body: bytes, now: float) -> float | None:
        """RESOURCE_EXHAUSTED: google.rpc.RetryInfo's retryDelay, else ErrorInfo's quotaResetDelay."""
        try:
            details = orjson.loads(body)["error"]["details"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            details = None
        if isinstance(details, list):
            delays = [d.get("retryDelay") for d in details if isinstance(d, dict)]
            delays += [
                (d.get("metadata") or {}).get("quotaResetDelay") for d in details if isinstance(d, dict)
            ]
            for delay in delays:
                seconds = _seconds(delay)
                if seconds is not None:
                    return now + seconds
        return retry_after(headers, now)

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


def _seconds(delay: Any) -> float | None:
    """A protobuf Duration as JSON ("37s", "1.5s"), or None."""
    if not isinstance(delay, str) or not delay.endswith("s"):
        return None
    try:
        value = float(delay[:-1])
    except ValueError:
        return None
    return value if value >= 0 else None
