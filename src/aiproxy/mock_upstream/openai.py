"""OpenAI wire format: Chat Completions (plain and Azure paths), model listing, errors, auth.

The Responses API lives in ``responses.py``; it shares ``extract_key``, ``error`` and ``headers``.
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
)

_ERRORS: dict[str, tuple[int, str, str, str | None]] = {
    "400": (400, "invalid_request_error", "Invalid request", None),
    "401": (
        401,
        "invalid_request_error",
        "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
        "invalid_api_key",
    ),
    "403": (403, "invalid_request_error", "This account has been disabled", "account_deactivated"),
    "404": (
        404,
        "invalid_request_error",
        "The model does not exist or you do not have access to it.",
        "model_not_found",
    ),
    "429": (
        429,
        "requests",
        "Rate limit reached for requests. Please try again later.",
        "rate_limit_exceeded",
    ),
    "500": (
        500,
        "server_error",
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
    ),
    # OpenAI has no 529; overload is a 503.
    "529": (503, "server_error", "The engine is currently overloaded, please try again later.", "overloaded"),
}
MISSING_KEY_MESSAGE = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header using "
    "Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)

_MODELS = (
    "gpt-5.5",
    "gpt-5.4",
    "gpt-5.4-mini",
    "gpt-5.1-codex",
    "gpt-5",
    "gpt-5-codex",
    "gpt-4.1",
    "gpt-4o",
    "gpt-4o-mini",
    "o3",
    "o4-mini",
)
_MODEL_OBJECTS = {
    m: {"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "openai"} for m in _MODELS
}
_MODELS_BODY = dumps({"object": "list", "data": list(_MODEL_OBJECTS.values())})

# Byte pieces of stream chunks: a chunk is head(id, created, model) + choices + tail.
_ROLE_CHOICES = dumps(
    [
        {
            "index": 0,
            "delta": {"role": "assistant", "content": "", "refusal": None},
            "logprobs": None,
            "finish_reason": None,
        }
    ]
)
_TAIL = b"}\n\n"
_TAIL_WITH_USAGE = b',"usage":null}\n\n'  # with include_usage every chunk carries "usage": null
_DONE = b"data: [DONE]\n\n"


def extract_key(request: web.Request) -> str | None:
    # Azure sends "api-key"; everyone else uses bearer auth.
    return bearer_token(request) or request.headers.get("api-key") or None


def headers(call: Call, content_type: str) -> dict[str, str]:
    return {
        "Content-Type": content_type,
        "x-request-id": call.request_id,
        "openai-version": "2020-10-01",
        "openai-processing-ms": "1",
        "x-ratelimit-limit-requests": "10000",
        "x-ratelimit-remaining-requests": "9999",
        "x-ratelimit-reset-requests": "6ms",
    }


def error(call: Call, mode: str, message: str | None = None) -> web.Response:
    status, etype, default, code = _ERRORS[mode]
    hdrs = {"Content-Type": JSON_CT, "x-request-id": call.request_id}
    if mode == "429" and "chatgpt-account-id" in call.request.headers:
        # The ChatGPT backend's plan limit: the reset is in the body, not in a header.
        limit = {
            "type": "usage_limit_reached",
            "message": message or call.behaviour.body or "The usage limit has been reached",
            "plan_type": "plus",
            "resets_in_seconds": call.behaviour.retry_after,
        }
        return json_response(call, {"error": limit}, hdrs, status)
    if mode == "429":
        retry = str(call.behaviour.retry_after)
        hdrs |= {
            "retry-after": retry,
            "x-ratelimit-limit-requests": "10000",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": f"{retry}s",
        }
    payload = {
        "error": {
            "message": message or call.behaviour.body or default,
            "type": etype,
            "param": None,
            "code": code,
        }
    }
    return json_response(call, payload, hdrs, status)


def usage_numbers(call: Call, inp: int) -> tuple[int, int, int]:
    """(prompt total, cached, cache-written): OpenAI's prompt count includes the cached part."""
    b = call.behaviour
    return inp + b.cache_read + b.cache_creation, b.cache_read, b.cache_creation


def _chat_usage(call: Call, inp: int, out: int) -> dict[str, Any]:
    prompt, cached, written = usage_numbers(call, inp)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": out,
        "total_tokens": prompt + out,
        "prompt_tokens_details": {"cached_tokens": cached, "cache_write_tokens": written, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


@lru_cache(maxsize=1024)
def _content_choices(chunks: tuple[str, ...]) -> tuple[bytes, ...]:
    return tuple(
        dumps([{"index": 0, "delta": {"content": c}, "logprobs": None, "finish_reason": None}])
        for c in chunks
    )


@lru_cache(maxsize=4)
def _finish_choices(reason: str) -> bytes:
    return dumps([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": reason}])


async def chat_completions(call: Call) -> web.StreamResponse:
    body = call.body
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    chunks, truncated = call.plan_words(max_tokens)
    inp = call.input_tokens()
    b = call.behaviour
    usage = _chat_usage(call, inp, len(chunks))
    norm = {
        "input_tokens": inp,
        "output_tokens": len(chunks),
        "cache_read_input_tokens": b.cache_read,
        "cache_creation_input_tokens": b.cache_creation,
    }
    finish = "length" if truncated else "stop"
    cid, created, text = new_id("chatcmpl-"), now(), "".join(chunks)
    if not body.get("stream"):
        payload = {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": call.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None, "annotations": []},
                    "logprobs": None,
                    "finish_reason": finish,
                }
            ],
            "usage": usage,
            "service_tier": "default",
            "system_fingerprint": "fp_mock",
        }
        call.report(usage, norm, text)
        return await send_body(call, dumps(payload), headers(call, JSON_CT))

    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    head = (
        b'data: {"id":"'
        + cid.encode()
        + b'","object":"chat.completion.chunk","created":'
        + str(created).encode()
        + b',"model":'
        + dumps(call.model)
        + b',"service_tier":"default","system_fingerprint":"fp_mock","choices":'
    )
    tail = _TAIL_WITH_USAGE if include_usage else _TAIL
    frames = [head + _ROLE_CHOICES + tail]
    frames += [head + choices + tail for choices in _content_choices(chunks)]
    frames.append(head + _finish_choices(finish) + tail)
    if include_usage:  # the final usage chunk has empty choices, exactly like OpenAI
        frames.append(head + b'[],"usage":' + dumps(usage) + _TAIL)
    frames.append(_DONE)

    cut_at = None
    if b.mode == "cut":
        sent = max(1, len(chunks) // 2)
        cut_at = 1 + sent  # role chunk + half the content; no finish, usage or [DONE]
        call.report(None, None, "".join(chunks[:sent]), completed=False)
    elif include_usage:
        call.report(usage, norm, text)
    else:
        call.report(None, None, text)  # nothing reported: the client did not ask for usage
    return await send_stream(call, frames, headers(call, SSE_CT), cut_at=cut_at)


async def list_models(call: Call) -> web.Response:
    call.record["status"] = 200
    return web.Response(body=_MODELS_BODY, headers=headers(call, JSON_CT))


async def get_model(call: Call) -> web.Response:
    model = _MODEL_OBJECTS.get(call.model)
    if model is None:
        return error(call, "404")
    return json_response(call, model, headers(call, JSON_CT))
