"""Shared pieces of the mock upstream: per-request context, deterministic usage, byte-level writers."""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson
from aiohttp import web

from .switches import Behaviour

JSON_CT = "application/json"
SSE_CT = "text/event-stream; charset=utf-8"

# Keys whose string values count as prompt text. Everything else (model, role, ids, flags) is ignored
# so that the count follows the conversation, not the request's bookkeeping.
_TEXT_KEYS = frozenset(
    {
        "text",
        "content",
        "system",
        "instructions",
        "input",
        "prompt",
        "thinking",
        "description",
        "arguments",
        "output",
    }
)
_FILLER = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit")

# A per-process random part keeps ids unique across mock restarts; the counter keeps them cheap.
_RUN = secrets.token_hex(4)
_SEQ = itertools.count(1)


def new_id(prefix: str) -> str:
    return f"{prefix}{_RUN}{next(_SEQ):012x}"


def bearer_token(request: web.Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() != "bearer ":
        return None
    return auth[7:].strip() or None


def count_text_chars(node: Any, counted: bool = False) -> int:
    """Total length of the prompt text in a request body.

    A string counts when its key is one of ``_TEXT_KEYS`` or it is an element of a list under such a key;
    dicts and lists are searched at any depth. Model names, roles, ids and flags therefore never count.
    """
    if isinstance(node, str):
        return len(node) if counted else 0
    total = 0
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str):
                if key in _TEXT_KEYS:
                    total += len(value)
            elif isinstance(value, dict | list):
                total += count_text_chars(value, key in _TEXT_KEYS)
    elif isinstance(node, list):
        for value in node:
            if isinstance(value, dict | list | str):
                total += count_text_chars(value, counted)
    return total


def count_input_tokens(body: Any) -> int:
    """The mock's deterministic input token count: prompt characters // 4, at least 1."""
    return max(1, count_text_chars(body) // 4)


@lru_cache(maxsize=1024)
def reply_chunks(model: str, words: int) -> tuple[str, ...]:
    """The deterministic reply, one chunk (= one output token) per word.

    "Hello from mock <model>" continued with filler words; every chunk but the last keeps its trailing
    space so that joining the chunks gives the full text.
    """
    base = f"Hello from mock {model}".split()
    out = [*base, *(_FILLER[i % len(_FILLER)] for i in range(max(0, words - len(base))))][:words]
    return tuple(f"{w} " for w in out[:-1]) + tuple(out[-1:])


class RequestRecord(dict[str, Any]):
    """What the mock saw and answered for one request.

    A dict (so it serialises as is for ``GET /__mock/requests``) that also allows attribute access,
    e.g. ``rec.usage`` as well as ``rec["usage"]``.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass(slots=True)
class Call:
    """Everything a vendor handler needs about one request."""

    request: web.Request
    body: dict[str, Any]
    model: str
    behaviour: Behaviour
    record: RequestRecord
    request_id: str
    default_words: int

    def input_tokens(self) -> int:
        return count_input_tokens(self.body)

    def plan_words(self, max_tokens: Any) -> tuple[tuple[str, ...], bool]:
        """Reply chunks for this request and whether they were truncated by the client's max tokens."""
        words = self.behaviour.words if self.behaviour.words is not None else self.default_words
        words = max(1, words)
        truncated = isinstance(max_tokens, int) and 0 < max_tokens < words
        if truncated:
            words = max_tokens
        return reply_chunks(self.model, words), truncated

    def report(self, usage: Any, tokens: dict[str, int] | None, text: str, *, completed: bool = True) -> None:
        """Record the usage the mock actually put on the wire (None when it reported none)."""
        rec = self.record
        rec["usage"] = usage
        rec["tokens"] = tokens
        rec["text"] = text
        rec["completed"] = completed


def tokens(inp: int, out: int, cache_read: int = 0, cache_creation: int = 0) -> dict[str, int]:
    """Normalised usage, Anthropic semantics: ``input_tokens`` excludes cache reads and writes."""
    return {
        "input_tokens": inp,
        "output_tokens": out,
        "cache_read_input_tokens": cache_read,
        "cache_creation_input_tokens": cache_creation,
    }


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


def sse(event: str, payload: Any) -> bytes:
    """An SSE frame with an ``event:`` line (Anthropic, OpenAI Responses)."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def sse_data(payload: Any) -> bytes:
    """A data-only SSE frame (OpenAI chat, Gemini ``alt=sse``)."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def json_response(call: Call, payload: Any, headers: dict[str, str], status: int = 200) -> web.Response:
    call.record["status"] = status
    return web.Response(body=orjson.dumps(payload), status=status, headers=headers)


async def send_body(
    call: Call, body: bytes, headers: dict[str, str], status: int = 200
) -> web.StreamResponse:
    """Send a complete (non-stream) body, honouring the ``slow`` and ``cut`` switches."""
    behaviour = call.behaviour
    call.record["status"] = status
    if behaviour.mode == "slow" and behaviour.delay_ms:
        await asyncio.sleep(behaviour.delay_ms / 1000)
    if behaviour.mode != "cut":
        return web.Response(body=body, status=status, headers=headers)
    # Announce the full length, send half, then drop the connection: the client sees a short read and
    # never gets to the usage at the end of the body, so nothing counts as reported.
    call.report(None, None, "", completed=False)
    resp = web.StreamResponse(status=status, headers=headers)
    resp.content_length = len(body)
    await resp.prepare(call.request)
    await resp.write(body[: len(body) // 2])
    _drop_connection(call.request)
    return resp


async def send_stream(
    call: Call, frames: list[bytes], headers: dict[str, str], *, cut_at: int | None = None
) -> web.StreamResponse:
    """Stream pre-rendered frames.

    With no delay everything goes out in one write (cheap for benchmarks, still a chunked stream).
    ``cut_at`` = number of frames to send before the connection is dropped without the stream's end.
    """
    resp = web.StreamResponse(status=200, headers=headers)
    call.record["status"] = 200
    await resp.prepare(call.request)
    if cut_at is not None:
        frames = frames[:cut_at]
    delay = call.behaviour.delay_ms / 1000 if call.behaviour.mode == "slow" else 0.0
    if delay:
        for frame in frames:
            await resp.write(frame)
            await asyncio.sleep(delay)
    else:
        await resp.write(b"".join(frames))
    if cut_at is not None:
        _drop_connection(call.request)
    return resp


def _drop_connection(request: web.Request) -> None:
    # close() (not abort()) flushes what was written, then closes without the final empty chunk, so the
    # client gets the partial stream followed by a connection error, like a real mid-stream drop.
    transport = request.transport
    if transport is not None:
        transport.close()


def now() -> int:
    return int(time.time())
