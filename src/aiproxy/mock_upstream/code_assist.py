"""Google's Code Assist API as the Gemini CLI uses it with a Google login:
``/v1internal:generateContent``, ``:streamGenerateContent?alt=sse`` and ``:countTokens``.

Requests wrap a native Gemini request (``{model, project, request: {...}}``); answers wrap
the native answer (``{"response": {...}, "traceId": ...}``). The mock checks the wrapper and
answers from the same generator as the Gemini API, so usage and text match it exactly.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from aiohttp import web

from . import gemini
from .common import SSE_CT, Call, dumps, json_response, new_id, send_body, send_stream, tokens


def _unwrapped(call: Call) -> Call | web.Response:
    """The call as the Gemini API would see it, or a 400 for a malformed wrapper."""
    inner = call.body.get("request")
    model = call.body.get("model")
    if not isinstance(inner, dict) or not isinstance(model, str) or not model:
        return gemini.error(call, "400", "Code Assist requests carry {model, project, request}.")
    if not isinstance(call.body.get("project"), str):
        return gemini.error(call, "400", "Code Assist requests name the user's project.")
    call.record["project"] = call.body["project"]
    return replace(call, body=inner, model=model.removeprefix("models/"))


def _wrapped(payload: dict[str, Any]) -> dict[str, Any]:
    return {"response": payload, "traceId": new_id("")}


async def generate_content(call: Call) -> web.StreamResponse:
    inner = _unwrapped(call)
    if isinstance(inner, web.Response):
        return inner
    chunks, truncated = gemini.plan(inner)
    inp, b = inner.input_tokens(), inner.behaviour
    text, usage = "".join(chunks), gemini.usage_of(inner, inp, len(chunks))
    inner.report(usage, tokens(inp, len(chunks), b.cache_read), text)
    payload = gemini.chunk(inner, new_id(""), text, "MAX_TOKENS" if truncated else "STOP", usage)
    return await send_body(inner, dumps(_wrapped(payload)), gemini.headers())


async def stream_generate_content(call: Call) -> web.StreamResponse:
    inner = _unwrapped(call)
    if isinstance(inner, web.Response):
        return inner
    if call.request.query.get("alt") != "sse":
        return gemini.error(call, "400", "Code Assist streams only with alt=sse in this mock.")
    chunks, truncated = gemini.plan(inner)
    inp, b = inner.input_tokens(), inner.behaviour
    rid, last = new_id(""), len(chunks) - 1
    finish = "MAX_TOKENS" if truncated else "STOP"
    frames = []
    for i, text in enumerate(chunks):
        usage = gemini.usage_of(inner, inp, i + 1)
        payload = gemini.chunk(inner, rid, text, finish if i == last else None, usage)
        frames.append(b"data: " + dumps(_wrapped(payload)) + b"\r\n\r\n")
    sent = len(chunks) if b.mode != "cut" else max(1, len(chunks) // 2)
    inner.report(
        gemini.usage_of(inner, inp, sent),
        tokens(inp, sent, b.cache_read),
        "".join(chunks[:sent]),
        completed=b.mode != "cut",
    )
    cut_at = sent if b.mode == "cut" else None
    return await send_stream(inner, frames, gemini.headers(SSE_CT), cut_at=cut_at)


async def count_tokens(call: Call) -> web.Response:
    inner = call.body.get("request")
    if not isinstance(inner, dict) or not str(inner.get("model", "")).startswith("models/"):
        return gemini.error(call, "400", "countTokens takes {request: {model: 'models/...', contents}}.")
    counted = replace(call, body=inner)
    inp = counted.input_tokens()
    payload = {"totalTokens": inp, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": inp}]}
    counted.report(payload, None, "")
    return json_response(counted, payload, gemini.headers())
