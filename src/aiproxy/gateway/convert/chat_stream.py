"""What every conversion into an OpenAI chat completion stream shares: the chunk framing.

A converter subclasses `ChatChunkStream` and turns its upstream's SSE events into chunks in
`_convert`; the base class renders the chunk head once (every chunk is that head plus a small
delta), and ends a stream that was cut before its upstream's final event with an OpenAI error
chunk and no `[DONE]`.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from .sse import SSEEvent, SSEParser

CUT_MESSAGE = "upstream stream ended before the response was complete"


def sse_data(payload: Any) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


class ChatChunkStream:
    """``feed`` may be called with any slicing of the upstream bytes; the output does not depend on
    it. ``completed`` turns true at the upstream's normal end, the only place ``[DONE]`` is sent."""

    def __init__(self, *, model: str, include_usage: bool, created: int | None = None) -> None:
        self.model = model
        self.include_usage = include_usage
        self.created = int(time.time()) if created is None else created
        self.completed = False
        self.errored = False
        self._parser = SSEParser()
        self._set_id("chatcmpl-" + str(int(self.created * 1000)))

    def feed(self, chunk: bytes) -> bytes:
        return self._convert(self._parser.feed(chunk))

    def finish(self) -> bytes:
        """Convert what is left. A stream that ended before its final event gets an error chunk."""
        out = self._convert(self._parser.flush())
        if not self.completed and not self.errored:
            self.errored = True
            out += sse_data(self._cut_error(CUT_MESSAGE))
        return out

    def _convert(self, events: list[SSEEvent]) -> bytes:
        raise NotImplementedError

    def _cut_error(self, message: str) -> dict[str, Any]:
        """The OpenAI error body a cut stream ends with."""
        raise NotImplementedError

    def _set_id(self, chunk_id: str) -> None:
        self._head = b'{"id":%b,"object":"chat.completion.chunk","created":%d,"model":%b' % (
            orjson.dumps(chunk_id),
            self.created,
            orjson.dumps(self.model),
        )
        self._prefix = self._head + b',"choices":[{"index":0,"delta":'

    def _chunk(self, delta: bytes, finish: bytes | None = None) -> bytes:
        tail = b'"' + finish + b'"' if finish else b"null"
        return b"data: " + self._prefix + delta + b',"logprobs":null,"finish_reason":' + tail + b"}]}\n\n"
