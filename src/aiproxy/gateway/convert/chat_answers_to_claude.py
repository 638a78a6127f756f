"""OpenAI chat completion answers (whole, streamed, errors) → an Anthropic Messages client.

The second half of serving a Claude client from another family: the upstream's answer was first made a
chat completion (the hub), and becomes a Messages answer here. Lost on the way: a thinking block's
signature (other vendors have none; the block is sent with an empty one, and dropped when the client sends
it back), which stop sequence matched (chat does not say), and cache writes (chat usage has no field for
them; billing reads them from the upstream wire, not from here). A chat stream gives its usage only at the
end, so a streamed answer's ``message_start`` counts 0 input tokens and ``message_delta`` has the totals.
"""

from __future__ import annotations

from typing import Any

import orjson

from .chat_reader import ChatStreamReader, chat_message, error_message, usage_numbers
from .openai_claude import RAW_ARGUMENTS_KEY

__all__ = ["ChatToClaudeStream", "chat_error_to_claude", "chat_response_to_claude"]

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
STOP_REASONS |= {"function_call": "tool_use", "content_filter": "refusal"}
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error"}
_ERROR_TYPES |= {404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error"}
_ERROR_TYPES |= {500: "api_error", 503: "overloaded_error", 529: "overloaded_error"}


def claude_usage_of(usage: Any) -> dict[str, int]:
    prompt, completion, cached, _ = usage_numbers(usage)
    return {
        "input_tokens": max(prompt - cached, 0),
        "output_tokens": completion,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
    }


def _tool_input(arguments: Any) -> dict[str, Any]:
    try:
        value = orjson.loads(arguments) if isinstance(arguments, str) and arguments.strip() else {}
    except orjson.JSONDecodeError:
        value = None
    return value if isinstance(value, dict) else {RAW_ARGUMENTS_KEY: arguments}


def chat_response_to_claude(resp: dict[str, Any], *, model: str) -> dict[str, Any]:
    """A whole ``chat.completion`` as a Messages ``message``."""
    message, finish = chat_message(resp)
    content: list[dict[str, Any]] = []
    if message.get("reasoning_content"):
        content.append({"type": "thinking", "thinking": message["reasoning_content"], "signature": ""})
    text = message.get("content")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    if message.get("refusal"):
        content.append({"type": "text", "text": message["refusal"]})
    for call in message.get("tool_calls") or ():
        fn = call.get("function") or {}
        block = {"type": "tool_use", "id": call.get("id") or "", "name": fn.get("name") or ""}
        content.append({**block, "input": _tool_input(fn.get("arguments"))})
    rid = str(resp.get("id") or "")
    return {
        "id": rid if rid.startswith("msg_") else "msg_" + rid.removeprefix("chatcmpl-"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": STOP_REASONS.get(finish, "end_turn"),
        "stop_sequence": None,
        "usage": claude_usage_of(resp.get("usage")),
    }


def chat_error_to_claude(status: int, body: bytes) -> bytes:
    """An OpenAI error body (or any body) as an Anthropic error body."""
    message, _ = error_message(body, status)
    kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})


def _event(name: bytes, payload: dict[str, Any]) -> bytes:
    return b"event: " + name + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class ChatToClaudeStream(ChatStreamReader):
    """Chat completion chunks → Messages stream events (message_start … message_stop).

    Content blocks are opened as the deltas change kind (thinking, text, one per tool call) and closed
    before the next; the usage, which a chat stream only gives at its end, goes in ``message_delta``."""

    def __init__(self, *, model: str) -> None:
        super().__init__()
        self.model = model
        self._started = False
        self._pending = b""  # message_start, sent before the first content
        self._blocks = 0  # content blocks opened
        self._open: tuple[str, Any] | None = None  # the open block: (kind, tool call index)
        self._tools: dict[Any, int] = {}  # chat tool call index → block index

    def _head(self, chunk: dict[str, Any]) -> None:
        if not self._started:
            self._started = True
            rid = str(chunk.get("id") or "")
            self._pending = _event(
                b"message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": "msg_" + rid.removeprefix("chatcmpl-"),
                        "type": "message",
                        "role": "assistant",
                        "model": self.model,
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": {"input_tokens": 0, "output_tokens": 0},
                    },
                },
            )

    def _start_once(self) -> bytes:
        if not self._started:
            self._head({})
        pending, self._pending = self._pending, b""
        return pending

    def _switch(self, kind: str, key: Any, block: dict[str, Any]) -> bytes:
        """Open a block of `kind` unless it is the open one (closing that first)."""
        if self._open == (kind, key):
            return b""
        out = self._close_block()
        self._open = (kind, key)
        index = self._blocks
        self._blocks += 1
        if kind == "tool_use":
            self._tools[key] = index
        start = {"type": "content_block_start", "index": index, "content_block": block}
        return out + _event(b"content_block_start", start)

    def _close_block(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        return _event(b"content_block_stop", {"type": "content_block_stop", "index": self._blocks - 1})

    def _block_delta(self, index: int, delta: dict[str, Any]) -> bytes:
        return _event(b"content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})

    def _delta(self, delta: dict[str, Any]) -> bytes:
        out = [self._start_once()]
        reasoning = delta.get("reasoning_content")
        if isinstance(reasoning, str) and reasoning:
            out.append(self._switch("thinking", None, {"type": "thinking", "thinking": "", "signature": ""}))
            out.append(self._block_delta(self._blocks - 1, {"type": "thinking_delta", "thinking": reasoning}))
        for key in ("content", "refusal"):
            text = delta.get(key)
            if isinstance(text, str) and text:
                out.append(self._switch("text", None, {"type": "text", "text": ""}))
                out.append(self._block_delta(self._blocks - 1, {"type": "text_delta", "text": text}))
        for call in delta.get("tool_calls") or ():
            if not isinstance(call, dict):
                continue
            key = call.get("index", 0)
            fn = call.get("function") or {}
            if key not in self._tools:
                block = {
                    "type": "tool_use",
                    "id": call.get("id") or "",
                    "name": fn.get("name") or "",
                    "input": {},
                }
                out.append(self._switch("tool_use", key, block))
            arguments = fn.get("arguments")
            if isinstance(arguments, str) and arguments:
                delta_json = {"type": "input_json_delta", "partial_json": arguments}
                out.append(self._block_delta(self._tools[key], delta_json))
        return b"".join(out)

    def _done(self) -> bytes:
        out = self._start_once() + self._close_block()
        reason = STOP_REASONS.get(self.finish_reason or "", "tool_use" if self._tools else "end_turn")
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": reason, "stop_sequence": None},
            "usage": claude_usage_of(self.usage),
        }
        return out + _event(b"message_delta", delta) + _event(b"message_stop", {"type": "message_stop"})

    def _error(self, error: dict[str, Any]) -> bytes:
        kind = error.get("type") if error.get("type") in _ERROR_TYPES.values() else "api_error"
        payload = {
            "type": "error",
            "error": {"type": kind, "message": error.get("message") or "upstream error"},
        }
        return self._start_once() + _event(b"error", payload)
