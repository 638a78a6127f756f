"""OpenAI Chat Completions: openai accounts on the chat route (and Claude-model chat via them)."""

from __future__ import annotations

from typing import Any

import orjson

from ..convert.sse import DataRewriter
from ..errors import OPENAI
from ..pool import PoolAccount
from ..usage import has_usage_object
from .base import _FORWARD_ANY, ChunkFilter, Provider, UpstreamRequest, vendor_root


class OpenAIChatProvider(Provider):
    wire = OPENAI
    forward = _FORWARD_ANY | {b"openai-beta", b"x-client-request-id"}
    forward_prefixes = (b"x-stainless-",)

    def target(self, account: PoolAccount, request: UpstreamRequest, headers: dict[str, str]) -> str:
        headers["authorization"] = f"Bearer {account.credentials.get('api_key', '')}"
        if account.organization_id:
            headers["openai-organization"] = account.organization_id
        return vendor_root(account.base_url, "/v1") + "/v1/chat/completions"

    def body_changes(
        self, account: PoolAccount, request: UpstreamRequest, payload: dict[str, Any]
    ) -> dict[str, Any]:
        changes = super().body_changes(account, request, payload)
        if request.stream and not request.usage_requested:
            # Usage only comes in a final chunk, and only when asked for: ask, and drop it later.
            options = payload.get("stream_options")
            kept = options if isinstance(options, dict) else {}
            changes["stream_options"] = {**kept, "include_usage": True}
        return changes

    def stream_filter(self, request: UpstreamRequest) -> ChunkFilter | None:
        return _UsageChunkDropper() if request.stream and not request.usage_requested else None


class _UsageChunkDropper(DataRewriter):
    """Removes the usage-only chunk the relay asked for when the client did not."""

    __slots__ = ()

    def rewrite(self, event: str | None, data: bytes) -> bytes | None:
        return None if has_usage_object(data) and _only_usage(data) else data

    def finish(self) -> bytes:
        return b""  # OpenAI ends every event: a partial one at a cut is not worth sending


def _only_usage(data: bytes) -> bool:
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    return isinstance(chunk, dict) and not chunk.get("choices")
