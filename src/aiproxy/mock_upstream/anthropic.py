"""Anthropic Messages API wire format (``/v1/messages``, ``/v1/messages/count_tokens``, ``/v1/models``).

A request that makes the model call a tool (``tool_choice`` ``{"type": "any"}`` or ``{"type": "tool"}``,
with ``tools``) is answered with one ``tool_use`` block instead of text: the tool chosen (the first one
for ``any``), input ``{"text": <the reply text>}``, stop reason ``tool_use``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from aiohttp import web

from .common import (
    JSON_CT,
    SSE_CT,
    Call,
    bearer_token,
    dumps,
    json_response,
    new_id,
    now,
    send_body,
    send_stream,
    sse,
    tokens,
)

_ERRORS: dict[str, tuple[int, str, str]] = {
    "400": (400, "invalid_request_error", "Invalid request"),
    "401": (401, "authentication_error", "invalid x-api-key"),
    "403": (403, "permission_error", "This account has been disabled"),
    "404": (404, "not_found_error", "Not found"),
    "429": (
        429,
        "rate_limit_error",
        "This request would exceed your account's rate limit. Please try again later.",
    ),
    "500": (500, "api_error", "Internal server error"),
    "529": (529, "overloaded_error", "Overloaded"),
}
MISSING_KEY_MESSAGE = "x-api-key header is required"

# Constant frames are rendered once.
_BLOCK_START = sse(
    "content_block_start",
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
)
_PING = sse("ping", {"type": "ping"})
_BLOCK_STOP = sse("content_block_stop", {"type": "content_block_stop", "index": 0})
_MESSAGE_STOP = sse("message_stop", {"type": "message_stop"})
_FRAMES_BEFORE_DELTAS = 3  # message_start, content_block_start, ping
# message_delta repeats the cumulative counts (current API behaviour), not only output_tokens.
_DELTA_USAGE_KEYS = (
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "output_tokens",
)

_MODELS = (
    ("claude-opus-4-7", "Claude Opus 4.7", "2026-04-01T00:00:00Z"),
    ("claude-sonnet-4-6", "Claude Sonnet 4.6", "2026-02-01T00:00:00Z"),
    ("claude-haiku-4-5-20251001", "Claude Haiku 4.5", "2025-10-01T00:00:00Z"),
    ("claude-opus-4-5-20251101", "Claude Opus 4.5", "2025-11-01T00:00:00Z"),
    ("claude-sonnet-4-5-20250929", "Claude Sonnet 4.5", "2025-09-29T00:00:00Z"),
)
_MODEL_OBJECTS = {m: {"type": "model", "id": m, "display_name": d, "created_at": c} for m, d, c in _MODELS}
_MODELS_BODY = dumps(
    {
        "data": list(_MODEL_OBJECTS.values()),
        "has_more": False,
        "first_id": _MODELS[0][0],
        "last_id": _MODELS[-1][0],
    }
)


def extract_key(request: web.Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key
    return bearer_token(request)


# The unified limiter's utilisation as the mock reports it on every answer (fractions 0..1).
FIVE_HOUR_UTILIZATION = "0.25"
SEVEN_DAY_UTILIZATION = "0.125"


def _headers(call: Call, content_type: str, status: str = "allowed") -> dict[str, str]:
    reset = str(now() + 5 * 3600)
    return {
        "Content-Type": content_type,
        "request-id": call.request_id,
        "anthropic-ratelimit-unified-status": status,
        "anthropic-ratelimit-unified-reset": reset,
        "anthropic-ratelimit-unified-representative-claim": "five_hour",
        "anthropic-ratelimit-unified-5h-status": status,
        "anthropic-ratelimit-unified-5h-reset": reset,
        "anthropic-ratelimit-unified-5h-utilization": FIVE_HOUR_UTILIZATION,
        "anthropic-ratelimit-unified-7d-status": "allowed",
        "anthropic-ratelimit-unified-7d-reset": str(now() + 7 * 86400),
        "anthropic-ratelimit-unified-7d-utilization": SEVEN_DAY_UTILIZATION,
    }


def error(call: Call, mode: str, message: str | None = None) -> web.Response:
    status, etype, default = _ERRORS[mode]
    headers = {
        "Content-Type": JSON_CT,
        "request-id": call.request_id,
        "x-should-retry": "true" if status in (429, 500, 529) else "false",
    }
    if mode == "429":
        reset = str(now() + call.behaviour.retry_after)
        headers |= {
            "retry-after": str(call.behaviour.retry_after),
            "anthropic-ratelimit-unified-status": "rejected",
            "anthropic-ratelimit-unified-reset": reset,
            "anthropic-ratelimit-unified-representative-claim": "five_hour",
            "anthropic-ratelimit-unified-5h-status": "rejected",
            "anthropic-ratelimit-unified-5h-reset": reset,
        }
    text = message or call.behaviour.body or default
    payload = {"type": "error", "error": {"type": etype, "message": text}, "request_id": call.request_id}
    return json_response(call, payload, headers, status)


def _usage(call: Call, inp: int, out: int) -> dict[str, Any]:
    b = call.behaviour
    long_writes = min(b.cache_creation_1h, b.cache_creation)
    return {
        "input_tokens": inp,
        "cache_creation_input_tokens": b.cache_creation,
        "cache_read_input_tokens": b.cache_read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": b.cache_creation - long_writes,
            "ephemeral_1h_input_tokens": long_writes,
        },
        "output_tokens": out,
        "service_tier": "standard",
    }


@lru_cache(maxsize=1024)
def _delta_frames(chunks: tuple[str, ...]) -> tuple[bytes, ...]:
    return tuple(
        sse(
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": c}},
        )
        for c in chunks
    )


def _forced_tool(body: dict[str, Any]) -> str | None:
    """The tool the request makes the model call, or None when it may answer in text."""
    tools = [t for t in body.get("tools") or () if isinstance(t, dict) and t.get("name")]
    choice = body.get("tool_choice")
    if not tools or not isinstance(choice, dict):
        return None
    if choice.get("type") == "tool":
        return str(choice.get("name") or "")
    return str(tools[0]["name"]) if choice.get("type") == "any" else None


def _tool_frames(block: dict[str, Any]) -> list[bytes]:
    arguments = dumps(block["input"]).decode()
    a, b = len(arguments) // 3, 2 * len(arguments) // 3
    start = {"type": "content_block_start", "index": 0, "content_block": {**block, "input": {}}}
    frames = [sse("content_block_start", start)]
    for piece in (arguments[:a], arguments[a:b], arguments[b:]):
        delta = {"type": "input_json_delta", "partial_json": piece}
        frames.append(sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}))
    return frames


async def messages(call: Call) -> web.StreamResponse:
    chunks, truncated = call.plan_words(call.body.get("max_tokens"))
    inp = call.input_tokens()
    b = call.behaviour
    status = "rejected" if b.mode == "rejected" else "allowed"
    final_usage = _usage(call, inp, len(chunks))
    stop_reason = "max_tokens" if truncated else "end_turn"
    message: dict[str, Any] = {
        "id": new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": call.model,
    }
    text = "".join(chunks)
    content: dict[str, Any] = {"type": "text", "text": text}
    tool = _forced_tool(call.body)
    if tool is not None:
        content = {"type": "tool_use", "id": new_id("toolu_"), "name": tool, "input": {"text": text}}
        stop_reason, text = "tool_use", dumps(content["input"]).decode()
    if not call.body.get("stream"):
        message |= {
            "content": [content],
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": final_usage,
        }
        call.report(final_usage, tokens(inp, len(chunks), b.cache_read, b.cache_creation), text)
        return await send_body(call, dumps(message), _headers(call, JSON_CT, status))

    # Like the real API, message_start carries the input side and a provisional output_tokens of 1.
    start_usage = _usage(call, inp, 1)
    message |= {"content": [], "stop_reason": None, "stop_sequence": None, "usage": start_usage}
    delta_usage = {k: final_usage[k] for k in _DELTA_USAGE_KEYS}
    frames = [
        sse("message_start", {"type": "message_start", "message": message}),
        *([_BLOCK_START, _PING, *_delta_frames(chunks)] if tool is None else [_PING, *_tool_frames(content)]),
        _BLOCK_STOP,
        sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": delta_usage,
            },
        ),
        _MESSAGE_STOP,
    ]
    cut_at = None
    if b.mode == "cut":
        sent = max(1, len(chunks) // 2)
        cut_at = _FRAMES_BEFORE_DELTAS + sent
        call.report(
            start_usage,
            tokens(inp, 1, b.cache_read, b.cache_creation),
            "".join(chunks[:sent]),
            completed=False,
        )
    else:
        call.report(delta_usage, tokens(inp, len(chunks), b.cache_read, b.cache_creation), text)
    headers = _headers(call, SSE_CT, status) | {"Cache-Control": "no-cache"}
    return await send_stream(call, frames, headers, cut_at=cut_at)


async def count_tokens(call: Call) -> web.Response:
    usage = {"input_tokens": call.input_tokens()}
    call.report(usage, None, "")
    return json_response(call, usage, _headers(call, JSON_CT))


async def list_models(call: Call) -> web.Response:
    call.record["status"] = 200
    return web.Response(body=_MODELS_BODY, headers=_headers(call, JSON_CT))


async def get_model(call: Call) -> web.Response:
    model = _MODEL_OBJECTS.get(call.model)
    if model is None:
        return error(call, "404", f"model: {call.model}")
    return json_response(call, model, _headers(call, JSON_CT))
