"""Gemini through Google's Code Assist API: gemini accounts logged in with Google OAuth.

Code Assist (`{root}/v1internal:{method}`, root = the account's base URL or the Code Assist
default) takes the native Gemini request wrapped with the model and the account's Code Assist
project (found at onboarding), and wraps each answer in `{"response": ...}`. The relay
unwraps it, so clients see the native Gemini answer they asked for; streams always come as
SSE from Code Assist and are turned back into a JSON array for a client that did not ask
for `alt=sse`.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..convert.sse import DataRewriter, SSEParser
from ..pool import PoolAccount
from .base import ChunkFilter, UpstreamRequest
from .gemini import GEMINI_API_ROOT, GeminiProvider

CODE_ASSIST_ROOT = "https://cloudcode-pa.googleapis.com"


def project_of(account: PoolAccount) -> str:
    facts = account.extra.get("oauth")
    project = facts.get("project_id") if isinstance(facts, dict) else None
    return str(project or "")


def _wants_sse(request: UpstreamRequest) -> bool:
    return "alt=sse" in request.query


class CodeAssistProvider(GeminiProvider):
    def target(self, account: PoolAccount, request: UpstreamRequest, headers: dict[str, str]) -> str:
        root = account.base_url
        if not root or root == GEMINI_API_ROOT:
            root = CODE_ASSIST_ROOT
        url = f"{root}/v1internal:{request.gemini_action}"
        if request.gemini_action == "streamGenerateContent":
            url += "?alt=sse"
        headers["authorization"] = f"Bearer {account.credentials.get('access_token', '')}"
        return url

    def encode(
        self, account: PoolAccount, request: UpstreamRequest, payload: dict[str, Any], raw: bytes | None
    ) -> bytes:
        if request.gemini_action == "countTokens":
            contents = payload.get("contents", [])
            return orjson.dumps({"request": {"model": f"models/{request.model}", "contents": contents}})
        body: dict[str, Any] = {"model": request.model, "request": payload}
        project = project_of(account)
        if project:
            body["project"] = project
        return orjson.dumps(body)

    def decode_answer(self, request: UpstreamRequest, body: bytes) -> bytes:
        data = orjson.loads(body)
        if isinstance(data, dict) and isinstance(data.get("response"), dict):
            return orjson.dumps(data["response"])
        return body  # countTokens answers unwrapped

    def stream_decoder(self, request: UpstreamRequest) -> ChunkFilter | None:
        return _Unwrapper()

    def stream_filter(self, request: UpstreamRequest) -> ChunkFilter | None:
        return None if _wants_sse(request) else _SSEToJSONArray()


class _Unwrapper(DataRewriter):
    """`data: {"response": {...}}` events → `data: {...}` (the native Gemini stream)."""

    __slots__ = ()

    def rewrite(self, event: str | None, data: bytes) -> bytes | None:
        try:
            decoded = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None  # not an answer chunk: nothing a Gemini client could use
        inner = decoded.get("response") if isinstance(decoded, dict) else None
        return orjson.dumps(inner) if isinstance(inner, dict) else data


class _SSEToJSONArray:
    """The stream as `streamGenerateContent` answers without `alt=sse`: one JSON array."""

    __slots__ = ("opened", "parser")
    content_type = "application/json"

    def __init__(self) -> None:
        self.parser = SSEParser()
        self.opened = False

    def feed(self, chunk: bytes) -> bytes:
        out = []
        for _event, data in self.parser.feed(chunk):
            out.append((b",\r\n" if self.opened else b"[") + data)
            self.opened = True
        return b"".join(out)

    def finish(self) -> bytes:
        return b"]" if self.opened else b"[]"
