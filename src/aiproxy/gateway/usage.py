"""Reading token usage out of upstream answers, whole or streamed, without changing them.

Every tap sees the bytes the client gets. For streams it parses only the events that
carry usage (Claude `message_start`/`message_delta`, OpenAI's final usage chunk, Responses
`response.completed`, Gemini `usageMetadata`), so long streams cost little.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..billing.pricing import Usage
from .convert.gemini_chat import gemini_usage as normalise_gemini_usage
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
    breakdown = usage.get("cache_creation")
    if isinstance(breakdown, dict) and "ephemeral_1h_input_tokens" in breakdown:
        into.cache_creation_1h_tokens = _int(breakdown["ephemeral_1h_input_tokens"])


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
    normalised = normalise_gemini_usage(meta)
    into.input_tokens = normalised["input_tokens"]
    into.output_tokens = normalised["output_tokens"]
    into.cache_read_tokens = normalised["cache_read_input_tokens"]


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


# The Responses API ends a stream with one of these; each carries the final usage.
_RESPONSES_FINAL = ("response.completed", "response.incomplete", "response.failed")


def has_usage_object(data: bytes) -> bool:
    return b'"usage":{' in data or b'"usage": {' in data


class StreamTap:
    """Watches an SSE stream for usage; `complete` turns true at the protocol's normal end, `failed`
    at an error event (the stream's last word: the client may leave once it has it)."""

    __slots__ = ("complete", "failed", "family", "parser", "saw_usage", "usage")

    def __init__(self, family: str) -> None:
        self.family = family
        self.parser = SSEParser()
        self.usage = Usage()
        self.saw_usage = False
        self.complete = False
        self.failed = False

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
            elif event == "error":
                self.failed = True
        elif family == OPENAI:
            if data == b"[DONE]":
                self.complete = True
            elif has_usage_object(data):  # every chunk says "usage":null once usage was asked for
                self._openai(data)
        elif family == RESPONSES:
            if event in _RESPONSES_FINAL or (
                event is None and any(f'"{e}"'.encode() in data for e in _RESPONSES_FINAL)
            ):
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
