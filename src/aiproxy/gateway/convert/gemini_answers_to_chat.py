"""Gemini answers (whole, streamed, errors) → OpenAI chat completions (the hub of the conversions).

The first half of serving any non-Gemini client from a Gemini account. Thought parts become
``reasoning_content``; function calls become tool calls (Gemini may give no call id: one is made from the
response and the call's position, and Gemini requests made by the relay match results back by name).
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from .chat_stream import ChatChunkStream, sse_data

__all__ = ["GeminiToChatStream", "gemini_error_to_openai", "gemini_response_to_chat", "gemini_usage_to_chat"]

_FINISH = {"MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter"}
_FINISH |= {"BLOCKLIST": "content_filter", "PROHIBITED_CONTENT": "content_filter", "SPII": "content_filter"}
_ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error"}
_ERROR_TYPES |= {429: "rate_limit_exceeded"}


def _int(meta: dict[str, Any], key: str) -> int:
    value = meta.get(key)
    return value if isinstance(value, int) else 0


def gemini_usage_to_chat(meta: Any) -> dict[str, Any]:
    """Chat usage from ``usageMetadata`` (the prompt count includes cached tokens in both)."""
    meta = meta if isinstance(meta, dict) else {}
    prompt = _int(meta, "promptTokenCount") + _int(meta, "toolUsePromptTokenCount")
    thoughts = _int(meta, "thoughtsTokenCount")
    completion = _int(meta, "candidatesTokenCount") + thoughts
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": _int(meta, "cachedContentTokenCount")},
        "completion_tokens_details": {"reasoning_tokens": thoughts},
    }


def _candidate(resp: dict[str, Any]) -> dict[str, Any]:
    candidates = resp.get("candidates")
    first = candidates[0] if isinstance(candidates, list) and candidates else None
    return first if isinstance(first, dict) else {}


def _parts(candidate: dict[str, Any]) -> list[dict[str, Any]]:
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    return [p for p in parts if isinstance(p, dict)] if isinstance(parts, list) else []


def _tool_call(part: dict[str, Any], call_id: str) -> dict[str, Any]:
    call = part["functionCall"]
    args = call.get("args") if isinstance(call.get("args"), dict) else {}
    fn = {"name": call.get("name") or "", "arguments": orjson.dumps(args).decode()}
    return {"id": call.get("id") or call_id, "type": "function", "function": fn}


def _finish(resp: dict[str, Any], candidate: dict[str, Any], tool_calls: bool) -> str | None:
    reason = candidate.get("finishReason")
    blocked = (
        (resp.get("promptFeedback") or {}).get("blockReason")
        if isinstance(resp.get("promptFeedback"), dict)
        else None
    )
    if blocked:
        return "content_filter"
    if not reason:
        return None
    return _FINISH.get(reason, "tool_calls" if tool_calls else "stop")


def gemini_response_to_chat(resp: dict[str, Any], *, model: str) -> dict[str, Any]:
    """A whole ``GenerateContentResponse`` as a ``chat.completion``."""
    candidate = _candidate(resp)
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[dict[str, Any]] = []
    rid = str(resp.get("responseId") or "")
    for part in _parts(candidate):
        if isinstance(part.get("functionCall"), dict):
            calls.append(_tool_call(part, f"call_{rid}_{len(calls)}"))
        elif isinstance(part.get("text"), str):
            (thoughts if part.get("thought") else texts).append(part["text"])
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    if thoughts:
        message["reasoning_content"] = "".join(thoughts)
    return {
        "id": "chatcmpl-" + rid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": _finish(resp, candidate, bool(calls)) or "stop",
            }
        ],
        "usage": gemini_usage_to_chat(resp.get("usageMetadata")),
    }


def gemini_error_to_openai(status: int, body: bytes) -> bytes:
    """A Google API error body (or any body) as an OpenAI error body."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, list) and data:  # an error inside a JSON-array stream
        data = data[0]
    err = data.get("error") if isinstance(data, dict) else None
    kind = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        message, code = err["message"], err.get("status")
    else:
        message, code = (
            body[:2000].decode("utf-8", "replace").strip() or f"upstream returned HTTP {status}",
            None,
        )
    return orjson.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}})


class GeminiToChatStream(ChatChunkStream):
    """Gemini ``alt=sse`` chunks → chat completion chunks. ``completed`` turns true at the chunk with a
    finish reason (Gemini's last), the only place ``[DONE]`` is sent."""

    def __init__(self, *, model: str, include_usage: bool, created: int | None = None) -> None:
        super().__init__(model=model, include_usage=include_usage, created=created)
        self._started = False
        self._calls = 0
        self._usage: Any = None

    def _cut_error(self, message: str) -> dict[str, Any]:
        return {"error": {"message": message, "type": "api_error", "param": None, "code": "server_error"}}

    def _convert(self, events: list[tuple[str | None, bytes]]) -> bytes:
        out: list[bytes] = []
        for _, data in events:
            if self.completed or self.errored:
                break
            try:
                chunk = orjson.loads(data)
            except orjson.JSONDecodeError:
                continue
            if isinstance(chunk, dict):
                self._chunk_of(chunk, out)
        return b"".join(out)

    def _chunk_of(self, chunk: dict[str, Any], out: list[bytes]) -> None:
        if isinstance(chunk.get("error"), dict):
            self.errored = True
            err = chunk["error"]
            error = {"message": err.get("message") or "upstream error", "type": "api_error"}
            out.append(sse_data({"error": {**error, "param": None, "code": err.get("status")}}))
            return
        if not self._started:
            self._started = True
            if chunk.get("responseId"):
                self._set_id("chatcmpl-" + str(chunk["responseId"]))
            out.append(self._chunk(b'{"role":"assistant","content":""}'))
        if chunk.get("usageMetadata") is not None:
            self._usage = chunk["usageMetadata"]
        candidate = _candidate(chunk)
        for part in _parts(candidate):
            if isinstance(part.get("functionCall"), dict):
                call = _tool_call(part, f"call_{self._head_id()}_{self._calls}")
                out.append(self._chunk(orjson.dumps({"tool_calls": [{"index": self._calls, **call}]})))
                self._calls += 1
            elif isinstance(part.get("text"), str) and part["text"]:
                key = "reasoning_content" if part.get("thought") else "content"
                out.append(self._chunk(orjson.dumps({key: part["text"]})))
        finish = _finish(chunk, candidate, self._calls > 0)
        if finish:
            if finish == "stop" and self._calls:
                finish = "tool_calls"
            out.append(self._chunk(b"{}", finish.encode()))
            self.completed = True
            if self.include_usage:
                usage = orjson.dumps(gemini_usage_to_chat(self._usage))
                out.append(b"data: " + self._head + b',"choices":[],"usage":' + usage + b"}\n\n")
            out.append(b"data: [DONE]\n\n")

    def _head_id(self) -> str:
        return str(self.created)
