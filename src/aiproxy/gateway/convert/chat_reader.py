"""What every conversion out of an OpenAI chat completion stream shares: reading the chunks.

The hub of the conversions is Chat Completions, so an answer for a Claude, Responses or Gemini client
is first a chat stream (made by one of the `*ToChatStream` converters, always with its usage chunk),
then read here chunk by chunk. A subclass says what each piece becomes in its client's protocol:
`_delta` (one choice delta), `_usage` (the usage chunk), `_done` (``[DONE]``: the normal end) and
`_error` (an error chunk, or a stream that ended before ``[DONE]``).
"""

from __future__ import annotations

from typing import Any

import orjson

from .chat_stream import CUT_MESSAGE
from .sse import SSEParser


class ChatStreamReader:
    """``feed`` may be called with any slicing of the chat SSE bytes. ``completed`` turns true at
    ``[DONE]``; a stream that ends without it (or with an error chunk) ends with the client's error."""

    content_type = "text/event-stream"

    def __init__(self) -> None:
        self.completed = False
        self.errored = False
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self._parser = SSEParser()

    def feed(self, chunk: bytes) -> bytes:
        return self._read(self._parser.feed(chunk))

    def finish(self) -> bytes:
        out = self._read(self._parser.flush())
        if not self.completed and not self.errored:
            self.errored = True
            out += self._error({"message": CUT_MESSAGE, "type": "api_error"})
        return out + self._close()

    def _read(self, events: list[tuple[str | None, bytes]]) -> bytes:
        out: list[bytes] = []
        for _, data in events:
            if self.completed or self.errored:
                break
            if data == b"[DONE]":
                self.completed = True
                out.append(self._done())
                continue
            try:
                chunk = orjson.loads(data)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(chunk, dict):
                continue
            if isinstance(chunk.get("error"), dict):
                self.errored = True
                out.append(self._error(chunk["error"]))
                continue
            self._head(chunk)
            for choice in chunk.get("choices") or ():
                if not isinstance(choice, dict):
                    continue
                delta = choice.get("delta")
                if isinstance(delta, dict) and delta:
                    out.append(self._delta(delta))
                if choice.get("finish_reason"):
                    self.finish_reason = choice["finish_reason"]
                    out.append(self._finished(choice["finish_reason"]))
            if isinstance(chunk.get("usage"), dict):
                self.usage = chunk["usage"]
        return b"".join(out)

    # -- what a subclass says

    def _head(self, chunk: dict[str, Any]) -> None:
        """Every chunk, before its choices (the first one opens the client's stream)."""

    def _delta(self, delta: dict[str, Any]) -> bytes:
        raise NotImplementedError

    def _finished(self, reason: str) -> bytes:
        return b""

    def _done(self) -> bytes:
        raise NotImplementedError

    def _error(self, error: dict[str, Any]) -> bytes:
        raise NotImplementedError

    def _close(self) -> bytes:
        """After the end (normal or not): a framing the client's protocol needs closed."""
        return b""


def usage_numbers(usage: Any) -> tuple[int, int, int, int]:
    """(prompt tokens with cached ones, completion tokens with reasoning, cached, reasoning) of chat usage."""
    if not isinstance(usage, dict):
        return 0, 0, 0, 0
    prompt = _int(usage.get("prompt_tokens"))
    completion = _int(usage.get("completion_tokens"))
    cached = _int((usage.get("prompt_tokens_details") or {}).get("cached_tokens"))
    reasoning = _int((usage.get("completion_tokens_details") or {}).get("reasoning_tokens"))
    return prompt, completion, cached, reasoning


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def chat_message(resp: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The first choice's message and finish reason of a whole chat completion."""
    choices = resp.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    return message, choice.get("finish_reason") or "stop"


def error_message(body: bytes, status: int) -> tuple[str, Any]:
    """The message and code of an OpenAI error body (any other body: its text)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        return err["message"], err.get("code")
    text = body[:2000].decode("utf-8", "replace").strip()
    return text or f"upstream returned HTTP {status}", None
