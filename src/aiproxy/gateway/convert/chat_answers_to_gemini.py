"""OpenAI chat completion answers (whole, streamed, errors) → a Gemini client.

The second half of serving a Gemini client (native ``generateContent`` / ``streamGenerateContent``, or
``/gemini/v1/chat``) from another family. A stream keeps the client's framing: SSE with ``alt=sse``, one
JSON array otherwise. Function calls are whole parts in Gemini, so a streamed call is held until its
arguments are complete. Lost: cache writes (Gemini reports none) and thought signatures (only a Gemini
upstream makes them).
"""

from __future__ import annotations

from typing import Any

import orjson

from .chat_reader import ChatStreamReader, chat_message, error_message, usage_numbers

__all__ = ["ChatToGeminiStream", "chat_error_to_gemini", "chat_response_to_gemini"]

FINISH_REASONS = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP", "content_filter": "SAFETY"}
_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND"}
_STATUS |= {413: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}


def gemini_usage_of(usage: Any) -> dict[str, int]:
    prompt, completion, cached, reasoning = usage_numbers(usage)
    meta = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": max(completion - reasoning, 0),
        "totalTokenCount": prompt + completion,
    }
    if reasoning:
        meta["thoughtsTokenCount"] = reasoning
    if cached:
        meta["cachedContentTokenCount"] = cached
    return meta


def _function_part(call_id: str, name: str, arguments: Any) -> dict[str, Any]:
    try:
        args = orjson.loads(arguments) if isinstance(arguments, str) and arguments.strip() else {}
    except orjson.JSONDecodeError:
        args = {"_raw_arguments": arguments}
    call = {"name": name, "args": args if isinstance(args, dict) else {"value": args}}
    if call_id:
        call["id"] = call_id
    return {"functionCall": call}


def _chunk(parts: list[dict[str, Any]], model: str, rid: str, finish: str | None = None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return {"candidates": [candidate], "modelVersion": model, "responseId": rid}


def chat_response_to_gemini(resp: dict[str, Any], *, model: str) -> dict[str, Any]:
    """A whole ``chat.completion`` as a ``GenerateContentResponse``."""
    message, finish = chat_message(resp)
    parts: list[dict[str, Any]] = []
    if message.get("reasoning_content"):
        parts.append({"text": message["reasoning_content"], "thought": True})
    for key in ("content", "refusal"):
        if isinstance(message.get(key), str) and message[key]:
            parts.append({"text": message[key]})
    for call in message.get("tool_calls") or ():
        fn = call.get("function") or {}
        parts.append(_function_part(call.get("id") or "", fn.get("name") or "", fn.get("arguments")))
    out = _chunk(parts, model, str(resp.get("id") or ""), FINISH_REASONS.get(finish, "STOP"))
    out["usageMetadata"] = gemini_usage_of(resp.get("usage"))
    return out


def chat_error_to_gemini(status: int, body: bytes) -> bytes:
    """An OpenAI error body (or any body) as a Google API error body."""
    message, _ = error_message(body, status)
    state = _STATUS.get(status, "INTERNAL" if status >= 500 else "INVALID_ARGUMENT")
    return orjson.dumps({"error": {"code": status, "message": message, "status": state}})


class ChatToGeminiStream(ChatStreamReader):
    """Chat completion chunks → ``GenerateContentResponse`` chunks; the last one carries the finish
    reason and the usage. ``sse``: the client asked ``alt=sse``; otherwise one JSON array."""

    def __init__(self, *, model: str, sse: bool) -> None:
        super().__init__()
        self.model = model
        self.sse = sse
        self.content_type = "text/event-stream" if sse else "application/json"
        self._rid = ""
        self._frames = 0
        self._calls: dict[Any, list[Any]] = {}  # chat tool call index → [id, name, argument pieces]

    def _frame(self, payload: dict[str, Any]) -> bytes:
        data = orjson.dumps(payload)
        self._frames += 1
        if self.sse:
            return b"data: " + data + b"\n\n"
        return (b"[" if self._frames == 1 else b",\r\n") + data

    def _head(self, chunk: dict[str, Any]) -> None:
        if not self._rid and chunk.get("id"):
            self._rid = str(chunk["id"])

    def _delta(self, delta: dict[str, Any]) -> bytes:
        parts: list[dict[str, Any]] = []
        reasoning = delta.get("reasoning_content")
        if isinstance(reasoning, str) and reasoning:
            parts.append({"text": reasoning, "thought": True})
        for key in ("content", "refusal"):
            if isinstance(delta.get(key), str) and delta[key]:
                parts.append({"text": delta[key]})
        for call in delta.get("tool_calls") or ():
            if not isinstance(call, dict):
                continue
            fn = call.get("function") or {}
            held = self._calls.setdefault(call.get("index", 0), [call.get("id") or "", fn.get("name") or ""])
            if isinstance(fn.get("arguments"), str):
                held.append(fn["arguments"])
        return self._frame(_chunk(parts, self.model, self._rid)) if parts else b""

    def _done(self) -> bytes:
        parts = [_function_part(c[0], c[1], "".join(c[2:])) for c in self._calls.values()]
        finish = FINISH_REASONS.get(self.finish_reason or "stop", "STOP")
        last = _chunk(parts or [{"text": ""}], self.model, self._rid, finish)
        last["usageMetadata"] = gemini_usage_of(self.usage)
        return self._frame(last)

    def _error(self, error: dict[str, Any]) -> bytes:
        # Gemini has no stream error event: a Google API error object in the stream is what its SDKs read.
        message = error.get("message") or "upstream error"
        return self._frame({"error": {"code": 500, "message": message, "status": "INTERNAL"}})

    def _close(self) -> bytes:
        if self.sse:
            return b""
        return b"]" if self._frames else b"[]"
