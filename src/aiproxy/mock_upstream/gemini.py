"""Gemini API wire format: ``/v1beta|v1/models/{model}:generateContent|streamGenerateContent|countTokens``.

A request asking for JSON (``generationConfig.responseMimeType: application/json`` with a
``responseJsonSchema`` or ``responseSchema``) is answered, as the real API does, with one JSON document
that fits the schema (one chunk, so one output token): strings are the reply text, integers and numbers
their ``minimum`` or 1, booleans true, arrays one item, enums their first value. Gemini CLI's model
router relies on it: it asks for ``{complexity_reasoning, complexity_score}`` before every prompt.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .common import SSE_CT, Call, bearer_token, dumps, json_response, new_id, send_body, send_stream, tokens

JSON_CT = "application/json; charset=UTF-8"

_ERRORS: dict[str, tuple[int, str, str]] = {
    "400": (400, "INVALID_ARGUMENT", "Invalid JSON payload received."),
    "401": (401, "UNAUTHENTICATED", "API key not valid. Please pass a valid API key."),
    "403": (403, "PERMISSION_DENIED", "This account has been disabled"),
    "404": (404, "NOT_FOUND", "Requested entity was not found."),
    "429": (429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    "500": (
        500,
        "INTERNAL",
        "An internal error has occurred. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting",
    ),
    # Gemini has no 529; overload is a 503 UNAVAILABLE.
    "529": (503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
}
MISSING_KEY_MESSAGE = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API."
)

_MODELS = (
    ("gemini-2.5-pro", "Gemini 2.5 Pro", 65536),
    ("gemini-2.5-flash", "Gemini 2.5 Flash", 65536),
    ("gemini-2.5-flash-lite", "Gemini 2.5 Flash-Lite", 65536),
    ("gemini-3-pro-preview", "Gemini 3 Pro Preview", 65536),
)
_MODEL_OBJECTS = {
    m: {
        "name": f"models/{m}",
        "version": "001",
        "displayName": d,
        "description": d,
        "inputTokenLimit": 1_048_576,
        "outputTokenLimit": out,
        "supportedGenerationMethods": [
            "generateContent",
            "countTokens",
            "createCachedContent",
            "batchGenerateContent",
        ],
        "temperature": 1,
        "topP": 0.95,
        "topK": 64,
        "maxTemperature": 2,
        "thinking": True,
    }
    for m, d, out in _MODELS
}
_MODELS_BODY = dumps({"models": list(_MODEL_OBJECTS.values())})


def extract_key(request: web.Request) -> str | None:
    return request.headers.get("x-goog-api-key") or request.query.get("key") or bearer_token(request)


def headers(content_type: str = JSON_CT) -> dict[str, str]:
    return {"Content-Type": content_type, "Vary": "Origin, X-Origin, Referer"}


def error(call: Call, mode: str, message: str | None = None) -> web.Response:
    status, grpc_status, default = _ERRORS[mode]
    err: dict[str, Any] = {
        "code": status,
        "message": message or call.behaviour.body or default,
        "status": grpc_status,
    }
    hdrs = headers()
    if mode == "429":
        retry = call.behaviour.retry_after
        # Google puts the delay into RetryInfo; retry-after is added for relays that only read headers.
        err["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry}s"}]
        hdrs["retry-after"] = str(retry)
    return json_response(call, {"error": err}, hdrs, status)


def usage_of(call: Call, inp: int, out: int) -> dict[str, Any]:
    # Gemini's prompt count includes cached tokens; it reports no cache writes.
    cached = call.behaviour.cache_read
    prompt = inp + cached
    usage: dict[str, Any] = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": out,
        "totalTokenCount": prompt + out,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
    }
    if cached:
        usage["cachedContentTokenCount"] = cached
        usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": cached}]
    return usage


def chunk(call: Call, rid: str, text: str, finish: str | None, usage: dict[str, Any]) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": call.model, "responseId": rid}


def _generation_config(call: Call) -> dict[str, Any]:
    config = call.body.get("generationConfig") or call.body.get("generation_config") or {}
    return config if isinstance(config, dict) else {}


def max_tokens(call: Call) -> Any:
    return _generation_config(call).get("maxOutputTokens")


def _fitting(schema: Any, text: str, depth: int = 0) -> Any:
    """A value that fits a JSON Schema or OpenAPI schema (types in any case)."""
    if not isinstance(schema, dict) or depth > 16:
        return text
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):  # JSON Schema allows ["string", "null"]
        kind = next((k for k in kind if str(k).lower() != "null"), "string")
    kind = str(kind or ("object" if "properties" in schema else "string")).lower()
    if kind == "object":
        properties = schema.get("properties") or {}
        return {name: _fitting(sub, text, depth + 1) for name, sub in properties.items()}
    if kind == "array":
        return [_fitting(schema.get("items"), text, depth + 1)]
    if kind in ("integer", "number"):
        minimum = schema.get("minimum")
        return minimum if isinstance(minimum, int | float) and minimum > 1 else 1
    if kind == "boolean":
        return True
    return None if kind == "null" else text


def plan(call: Call) -> tuple[tuple[str, ...], bool]:
    """The reply chunks and whether max tokens cut them; a JSON answer when the request asks for one."""
    chunks, truncated = call.plan_words(max_tokens(call))
    config = _generation_config(call)
    schema = config.get("responseJsonSchema") or config.get("responseSchema")
    if config.get("responseMimeType") != "application/json" or not isinstance(schema, dict):
        return chunks, truncated
    return (dumps(_fitting(schema, "".join(chunks))).decode(),), False


async def generate_content(call: Call) -> web.StreamResponse:
    chunks, truncated = plan(call)
    inp, b = call.input_tokens(), call.behaviour
    finish = "MAX_TOKENS" if truncated else "STOP"
    text, usage = "".join(chunks), usage_of(call, inp, len(chunks))
    call.report(usage, tokens(inp, len(chunks), b.cache_read), text)
    payload = chunk(call, new_id(""), text, finish, usage)
    return await send_body(call, dumps(payload), headers())


async def stream_generate_content(call: Call) -> web.StreamResponse:
    chunks, truncated = plan(call)
    inp, b = call.input_tokens(), call.behaviour
    rid, last = new_id(""), len(chunks) - 1
    finish = "MAX_TOKENS" if truncated else "STOP"
    # Every chunk carries cumulative usage, as the real API does; the last one is final.
    payloads = [
        dumps(chunk(call, rid, c, finish if i == last else None, usage_of(call, inp, i + 1)))
        for i, c in enumerate(chunks)
    ]
    sse_mode = call.request.query.get("alt") == "sse"
    if sse_mode:
        frames = [b"data: " + p + b"\n\n" for p in payloads]
    else:  # without alt=sse the stream is one JSON array, sent element by element
        frames = [(b"[" if i == 0 else b",\r\n") + p for i, p in enumerate(payloads)]
        frames.append(b"]")
    cut_at = None
    sent = len(chunks)
    if b.mode == "cut":
        sent = max(1, len(chunks) // 2)
        cut_at = sent
    call.report(
        usage_of(call, inp, sent),
        tokens(inp, sent, b.cache_read),
        "".join(chunks[:sent]),
        completed=cut_at is None,
    )
    return await send_stream(call, frames, headers(SSE_CT if sse_mode else JSON_CT), cut_at=cut_at)


async def count_tokens(call: Call) -> web.Response:
    inp = call.input_tokens()
    payload = {"totalTokens": inp, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": inp}]}
    call.report(payload, None, "")
    return json_response(call, payload, headers())


async def list_models(call: Call) -> web.Response:
    call.record["status"] = 200
    return web.Response(body=_MODELS_BODY, headers=headers())


async def get_model(call: Call) -> web.Response:
    model = _MODEL_OBJECTS.get(call.model)
    if model is None:
        return error(call, "404", f"models/{call.model} is not found for API version v1beta.")
    return json_response(call, model, headers())
