"""Refuse request input that no parser or database can take, before any /api route sees it.

- JSON nested too deeply: the JSON parser, the validators and the audit log's secret masking all
  recurse once per level, so a body such as `[[[[…]]]]` a thousand levels deep ends in a
  RecursionError (a 500) in whichever of them meets it first.
- NUL characters: PostgreSQL text cannot hold U+0000, so a NUL in a query value or a body string
  would fail in the database driver (a 500) where SQLite would store it.

One check in front of every route answers 400 in the envelope instead, so no route has to defend
itself.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .envelope import error

# The deepest real body (an account with its model_mapping object) has two levels.
MAX_JSON_DEPTH = 32
TOO_DEEP = "request body is nested too deeply"
NUL_REASON = "must not contain NUL characters"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# A JSON string (brackets inside it do not count) or one bracket.
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def json_depth_exceeds(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether arrays/objects in `body` nest deeper than `limit` (not a full JSON parse)."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False  # cannot be deeper than the number of opening brackets
    depth = 0
    for match in _TOKENS.finditer(body):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif token in (b"]", b"}"):
            depth -= 1
    return False


def _nul_in_json(value: Any, path: list[str]) -> list[str] | None:
    """The location of the first string (key or value) holding a NUL, or None."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            found = [*path, key] if "\x00" in key else _nul_in_json(item, [*path, key])
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _nul_in_json(item, [*path, str(index)])
            if found is not None:
                return found
    return None


def nul_field(scope: Scope, body: bytes) -> str | None:
    """The name of the first path, query or body field holding a NUL character ("" when unnamed)."""
    if "\x00" in scope.get("path", ""):
        return "path"
    query: bytes = scope.get("query_string", b"")
    if b"%00" in query or b"\x00" in query:
        for key, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            if "\x00" in key or "\x00" in value:
                return key.replace("\x00", "")[:64]
    if b"\\u0000" in body:  # JSON can carry a NUL only as this escape
        try:
            decoded = json.loads(body)  # safe: the depth was checked first
        except ValueError:
            return None  # not JSON: the route says so
        found = _nul_in_json(decoded, [])
        if found is not None:
            return ".".join(part.replace("\x00", "")[:64] for part in found[:8])
    return None


class RequestGuard:
    """ASGI middleware: reads a body once, refuses what no route can take, else replays it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = b""
        disconnected: Message | None = None
        if scope["method"] in _BODY_METHODS:
            chunks: list[bytes] = []
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    disconnected = message
                    break
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
            body = b"".join(chunks)
        refusal = self._refusal(scope, body) if disconnected is None else None
        if refusal is not None:
            await error(400, refusal)(scope, receive, send)
            return
        if scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                if disconnected is not None:
                    return disconnected
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    def _refusal(scope: Scope, body: bytes) -> str | None:
        if json_depth_exceeds(body):
            return TOO_DEEP
        field = nul_field(scope, body)
        if field is None:
            return None
        return f"{field}: {NUL_REASON}" if field else NUL_REASON
