"""The Responses API beyond `create`: compaction, token counting, and the calls on a stored response.

``POST /responses/compact`` answers a ``response.compaction`` object: the user messages of the input
followed by one ``compaction`` item, with usage. ``POST /responses/input_tokens`` counts the input.
A response made with ``store`` not false is kept (the most recent ``KEPT`` of them) for
``GET``/``DELETE /responses/{id}``, ``POST /responses/{id}/cancel`` (only a ``background`` one that is
still queued) and ``GET /responses/{id}/input_items``; an unknown id is the vendor's 404.
"""

from __future__ import annotations

import base64
from collections import OrderedDict
from typing import Any

from aiohttp import web

from .common import JSON_CT, Call, dumps, json_response, new_id, now, send_body
from .openai import headers as openai_headers
from .openai import usage_numbers

KEPT = 2000


class StoredResponses:
    """Responses the fake keeps, oldest dropped first."""

    def __init__(self, *, keep: bool = True) -> None:
        self.items: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.enabled = keep

    def keep(self, response: dict[str, Any], inputs: list[dict[str, Any]]) -> None:
        if not self.enabled:
            return
        self.items[response["id"]] = {"response": response, "input_items": inputs}
        while len(self.items) > KEPT:
            self.items.popitem(last=False)


STORED = web.AppKey("mock_responses_stored", StoredResponses)


def input_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's input as the stored items the API lists (each with an id)."""
    raw = body.get("input")
    if isinstance(raw, str):
        raw = [{"role": "user", "content": raw}]
    items = []
    for entry in raw if isinstance(raw, list) else []:
        if not isinstance(entry, dict):
            continue
        item = {"id": new_id("msg_"), "type": "message", "status": "completed", **entry}
        content = item.get("content")
        if isinstance(content, str):
            item["content"] = [{"type": "input_text", "text": content}]
        items.append(item)
    return items


def _not_found(call: Call, response_id: str) -> web.Response:
    error = {
        "message": f"Response with id '{response_id}' not found.",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    return json_response(call, {"error": error}, openai_headers(call, JSON_CT), 404)


def _stored(call: Call) -> StoredResponses:
    return call.request.app[STORED]


async def compact(call: Call) -> web.StreamResponse:
    inp = call.input_tokens()
    chunks, _ = call.plan_words(None)
    prompt, cached, written = usage_numbers(call, inp)
    out = len(chunks)
    usage = {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": written},
        "output_tokens": out,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + out,
    }
    b = call.behaviour
    tokens = {
        "input_tokens": inp,
        "output_tokens": out,
        "cache_read_input_tokens": b.cache_read,
        "cache_creation_input_tokens": b.cache_creation,
    }
    kept = [item for item in input_items(call.body) if item.get("role") == "user"]
    summary = base64.b64encode("".join(chunks).encode()).decode()
    compaction = {"id": new_id("cmp_"), "type": "compaction", "encrypted_content": summary}
    payload = {
        "id": new_id("resp_"),
        "object": "response.compaction",
        "created_at": now(),
        "output": [*kept, compaction],
        "usage": usage,
    }
    call.report(usage, tokens, "".join(chunks))
    return await send_body(call, dumps(payload), openai_headers(call, JSON_CT))


async def input_tokens(call: Call) -> web.StreamResponse:
    payload = {"object": "response.input_tokens", "input_tokens": call.input_tokens()}
    call.report(None, None, "")
    return await send_body(call, dumps(payload), openai_headers(call, JSON_CT))


async def retrieve(call: Call) -> web.StreamResponse:
    found = _stored(call).items.get(call.model)
    if found is None:
        return _not_found(call, call.model)
    return json_response(call, found["response"], openai_headers(call, JSON_CT))


async def delete(call: Call) -> web.StreamResponse:
    if _stored(call).items.pop(call.model, None) is None:
        return _not_found(call, call.model)
    payload = {"id": call.model, "object": "response.deleted", "deleted": True}
    return json_response(call, payload, openai_headers(call, JSON_CT))


async def cancel(call: Call) -> web.StreamResponse:
    found = _stored(call).items.get(call.model)
    if found is None:
        return _not_found(call, call.model)
    response = found["response"]
    if not response.get("background"):
        error = {
            "message": "Only responses created with background=true can be cancelled.",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
        return json_response(call, {"error": error}, openai_headers(call, JSON_CT), 400)
    if response["status"] in ("queued", "in_progress"):
        response["status"] = "cancelled"
    return json_response(call, response, openai_headers(call, JSON_CT))


async def list_input_items(call: Call) -> web.StreamResponse:
    found = _stored(call).items.get(call.model)
    if found is None:
        return _not_found(call, call.model)
    items = found["input_items"]
    payload = {
        "object": "list",
        "data": items,
        "first_id": items[0]["id"] if items else None,
        "last_id": items[-1]["id"] if items else None,
        "has_more": False,
    }
    return json_response(call, payload, openai_headers(call, JSON_CT))
