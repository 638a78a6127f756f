"""Reading token usage out of upstream answers, whole or streamed, without changing them.

Every tap sees the bytes the client gets. For streams it parses only the events that
carry usage (Claude `message_start`/`message_delta`, OpenAI's final usage chunk, Responses
`response.completed`, Gemini `usageMetadata`), so long streams cost little.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..billing.pricing import Usage
from .convert.sse import SSEParser
from .errors import CLAUDE, GEMINI, OPENAI, RESPONSES


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) else 0


def claude_usage(usage: dict[str, Any], into: Usage) -> None:
    """Anthropic usage objects; later events (message_delta) carry final totals."""
    if "input_tokens" in usage:
        into.input_tokens = _int(usage["input_tokens"])
    if "output_tokens" in usage:
        into.output_tokens = _int(usage["output_tokens"])
    if "cache_creation_input_tokens" in usage:
        into.cache_creation_tokens = _int(usage["cache_creation_input_tokens"])
    if "cache_read_input_tokens" in usage:
        into.cache_read_tokens = _int(usage["cache_read_input_tokens"])


def openai_usage(usage: dict[str, Any], into: Usage) -> None:
    """Chat Completions: prompt_tokens include the cached part."""
    details = usage.get("prompt_tokens_details") or {}
    cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else 0
    into.input_tokens = max(0, _int(usage.get("prompt_tokens")) - cached)
    into.output_tokens = _int(usage.get("completion_tokens"))
    into.cache_read_tokens = cached


def responses_usage(usage: dict[str, Any], into: Usage) -> None:
    """Responses API: input_tokens include the cached part."""
    details = usage.get("input_tokens_details") or {}
    cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else 0
    into.input_tokens = max(0, _int(usage.get("input_tokens")) - cached)
    into.output_tokens = _int(usage.get("output_tokens"))
    into.cache_read_tokens = cached


def gemini_usage(meta: dict[str, Any], into: Usage) -> None:
    cached = _int(meta.get("cachedContentTokenCount"))
    into.input_tokens = max(0, _int(meta.get("promptTokenCount")) - cached)
    into.output_tokens = _int(meta.get("candidatesTokenCount")) + _int(meta.get("thoughtsTokenCount"))
    into.cache_read_tokens = cached


def usage_from_body(family: str, body: bytes) -> Usage | None:
    """Usage of a complete (non-streamed) answer, or None when it carries none."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if isinstance(data, list):  # Gemini streamGenerateContent without alt=sse: a JSON array
        data = next((d for d in reversed(data) if isinstance(d, dict) and "usageMetadata" in d), None)
    if not isinstance(data, dict):
        return None
    usage = Usage()
    if family == GEMINI:
        meta = data.get("usageMetadata")
        if not isinstance(meta, dict):
            return None
        gemini_usage(meta, usage)
        return usage
    raw = data.get("usage")
    if not isinstance(raw, dict):
        return None
    if family == CLAUDE:
        claude_usage(raw, usage)
    elif family == RESPONSES:
        responses_usage(raw, usage)
    else:
        openai_usage(raw, usage)
    return usage


class StreamTap:
    """Watches an SSE stream for usage; `complete` turns true at the protocol's normal end."""

    __slots__ = ("complete", "family", "parser", "saw_usage", "usage")

    def __init__(self, family: str) -> None:
        self.family = family
        self.parser = SSEParser()
        self.usage = Usage()
        self.saw_usage = False
        self.complete = False

    def feed(self, chunk: bytes) -> None:
        for event, data in self.parser.feed(chunk):
            self.on_event(event, data)

    def on_event(self, event: str | None, data: bytes) -> None:
        family = self.family
        if family == CLAUDE:
            if event == "message_start" or event == "message_delta":
                self._claude(data, event)
            elif event == "message_stop":
                self.complete = True
        elif family == OPENAI:
            if data == b"[DONE]":
                self.complete = True
            elif b'"usage"' in data:
                self._openai(data)
        elif family == RESPONSES:
            if event == "response.completed" or (event is None and b'"response.completed"' in data):
                self._responses(data)
                self.complete = True
        elif family == GEMINI and b'"usageMetadata"' in data:
            self._gemini(data)

    def _load(self, data: bytes) -> dict[str, Any] | None:
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
        return obj if isinstance(obj, dict) else None

    def _claude(self, data: bytes, event: str) -> None:
        obj = self._load(data)
        if obj is None:
            return
        usage = (obj.get("message") or {}).get("usage") if event == "message_start" else obj.get("usage")
        if isinstance(usage, dict):
            claude_usage(usage, self.usage)
            self.saw_usage = True

    def _openai(self, data: bytes) -> None:
        obj = self._load(data)
        usage = obj.get("usage") if obj else None
        if isinstance(usage, dict):
            openai_usage(usage, self.usage)
            self.saw_usage = True

    def _responses(self, data: bytes) -> None:
        obj = self._load(data)
        usage = ((obj or {}).get("response") or {}).get("usage")
        if isinstance(usage, dict):
            responses_usage(usage, self.usage)
            self.saw_usage = True

    def _gemini(self, data: bytes) -> None:
        obj = self._load(data)
        meta = obj.get("usageMetadata") if obj else None
        if isinstance(meta, dict):
            gemini_usage(meta, self.usage)
            self.saw_usage = True
            candidates = obj.get("candidates") if obj else None
            if isinstance(candidates, list) and any(
                isinstance(c, dict) and c.get("finishReason") for c in candidates
            ):
                self.complete = True
