"""OpenAI Responses API wire format (``/v1/responses``, ChatGPT ``/backend-api/codex/responses``, Azure).

A request that makes the model call a function (``tool_choice`` ``"required"`` or a named function, with
function ``tools``) is answered with one ``function_call`` item instead of a message: the function chosen
(the first one for ``"required"``), arguments ``{"text": <the reply text>}``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from aiohttp import web

from .common import JSON_CT, SSE_CT, Call, dumps, new_id, now, send_body, send_stream, sse
from .openai import headers as openai_headers
from .openai import usage_numbers
from .responses_stored import STORED, input_items

_FRAMES_BEFORE_DELTAS = 4  # created, in_progress, output_item.added, content_part.added


# The ChatGPT backend's plan windows, as the mock reports them (percent used).
CODEX_PRIMARY_USED = "12.5"
CODEX_SECONDARY_USED = "3"


def headers(call: Call, content_type: str) -> dict[str, str]:
    """OpenAI's headers; the ChatGPT backend (a request with a ChatGPT account id) adds its plan windows."""
    out = openai_headers(call, content_type)
    if "chatgpt-account-id" in call.request.headers:
        out |= {
            "x-codex-primary-used-percent": CODEX_PRIMARY_USED,
            "x-codex-primary-reset-after-seconds": "9000",
            "x-codex-primary-window-minutes": "300",
            "x-codex-secondary-used-percent": CODEX_SECONDARY_USED,
            "x-codex-secondary-reset-after-seconds": "400000",
            "x-codex-secondary-window-minutes": "10080",
        }
    return out


@lru_cache(maxsize=1024)
def _json_chunks(chunks: tuple[str, ...]) -> tuple[bytes, ...]:
    return tuple(dumps(c) for c in chunks)


def _usage(call: Call, inp: int, out: int) -> dict[str, Any]:
    prompt, cached, written = usage_numbers(call, inp)
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": written},
        "output_tokens": out,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + out,
    }


def _response(
    call: Call, rid: str, created: int, status: str, output: list[Any], usage: Any
) -> dict[str, Any]:
    body = call.body
    return {
        "id": rid,
        "object": "response",
        "created_at": created,
        "status": status,
        "background": bool(body.get("background")),
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": call.model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "store": body.get("store", True),
        "temperature": 1.0,
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": {},
    }


def _part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def _item(item_id: str, status: str, content: list[Any]) -> dict[str, Any]:
    return {"id": item_id, "type": "message", "status": status, "content": content, "role": "assistant"}


def _forced_function(body: dict[str, Any]) -> str | None:
    """The function the request makes the model call, or None when it may answer in text."""
    tools = [t for t in body.get("tools") or () if isinstance(t, dict) and t.get("type") == "function"]
    choice = body.get("tool_choice")
    if not tools:
        return None
    if isinstance(choice, dict) and choice.get("type") == "function":
        return str(choice.get("name") or "")
    return str(tools[0].get("name") or "") if choice == "required" else None


def _function_call(name: str, text: str, status: str) -> dict[str, Any]:
    arguments = dumps({"text": text}).decode()
    item = {"id": new_id("fc_"), "type": "function_call", "status": status, "arguments": arguments}
    return item | {"call_id": new_id("call_"), "name": name}


def _compaction_requested(body: dict[str, Any]) -> bool:
    """Codex's remote compaction: an ordinary create whose input ends with a `compaction_trigger`."""
    items = body.get("input")
    return isinstance(items, list) and bool(items) and (items[-1] or {}).get("type") == "compaction_trigger"


def _compaction(status: str, text: str) -> dict[str, Any]:
    """The one `compaction` item a compaction request gets: the history, summarised and opaque."""
    summary = base64.b64encode(("compacted: " + text).encode()).decode()
    return {"id": new_id("cmp_"), "type": "compaction", "status": status, "encrypted_content": summary}


@dataclass(slots=True)
class Answer:
    """What the fake answers one create with, whole (`response`) and as stream frames."""

    rid: str
    response: dict[str, Any]  # the final response object
    frames: list[bytes]  # the SSE stream, event by event
    usage: dict[str, Any]
    tokens: dict[str, int]  # the usage, normalised (what tests compare with)
    text: str
    cut_at: int | None = None  # with the `cut` behaviour: the frames a stream sends before it breaks
    cut_text: str = ""  # what those frames said

    def report_streamed(self, call: Call) -> None:
        if self.cut_at is None:
            call.report(self.usage, self.tokens, self.text)
        else:
            call.report(None, None, self.cut_text, completed=False)


def plan_answer(call: Call) -> Answer:
    """The answer to one create, for HTTP (whole or streamed) and the WebSocket alike."""
    chunks, truncated = call.plan_words(call.body.get("max_output_tokens"))
    inp = call.input_tokens()
    b = call.behaviour
    usage = _usage(call, inp, len(chunks))
    norm = {
        "input_tokens": inp,
        "output_tokens": len(chunks),
        "cache_read_input_tokens": b.cache_read,
        "cache_creation_input_tokens": b.cache_creation,
    }
    # Hitting max_output_tokens makes a real response "incomplete" rather than "completed".
    final_status = "incomplete" if truncated else "completed"
    rid, item_id, created, text = new_id("resp_"), new_id("msg_"), now(), "".join(chunks)
    function = _forced_function(call.body)
    pieces: tuple[str, ...]
    if _compaction_requested(call.body):
        done_item = _compaction(final_status, text)
        frames = _item_frames(call, rid, created, final_status, usage, done_item)
        pieces, lead, text = (), 0, ""
    elif function is not None:
        done_item = _function_call(function, text, final_status)
        text = done_item["arguments"]
        frames = _item_frames(call, rid, created, final_status, usage, done_item)
        pieces, lead = _argument_pieces(text), _FRAMES_BEFORE_DELTAS - 1  # no content part
    else:
        done_item = _item(item_id, final_status, [_part(text)])
        frames = _stream_frames(call, chunks, rid, item_id, created, final_status, usage, done_item)
        pieces, lead = chunks, _FRAMES_BEFORE_DELTAS
    response = _response(call, rid, created, final_status, [done_item], usage)
    answer = Answer(rid, response, frames, usage, norm, text)
    if b.mode == "cut" and pieces:  # the stream breaks half way through the deltas
        sent = max(1, len(pieces) // 2)
        answer.cut_at, answer.cut_text = lead + sent, "".join(pieces[:sent])
    return answer


async def create(call: Call) -> web.StreamResponse:
    stream = call.body.get("stream")
    if call.body.get("background") and not stream:  # queued: answered later (retrieve, cancel)
        call.report(None, None, "")
        payload = _response(call, new_id("resp_"), now(), "queued", [], None)
        _keep(call, payload)
        return await send_body(call, dumps(payload), headers(call, JSON_CT))
    answer = plan_answer(call)
    if call.behaviour.mode != "cut":
        _keep(call, answer.response)
    if not stream:
        call.report(answer.usage, answer.tokens, answer.text)
        return await send_body(call, dumps(answer.response), headers(call, JSON_CT))
    answer.report_streamed(call)
    return await send_stream(call, answer.frames, headers(call, SSE_CT), cut_at=answer.cut_at)


def _keep(call: Call, response: dict[str, Any]) -> None:
    """A response the vendor stores (``store`` not false) can be retrieved, listed and deleted later."""
    if call.body.get("store", True) is not False:
        call.request.app[STORED].keep(response, input_items(call.body))


def _stream_frames(
    call: Call,
    chunks: tuple[str, ...],
    rid: str,
    item_id: str,
    created: int,
    final_status: str,
    usage: dict[str, Any],
    done_item: dict[str, Any],
) -> list[bytes]:
    text = done_item["content"][0]["text"]
    pending = _response(call, rid, created, "in_progress", [], None)
    ids = {"item_id": item_id, "output_index": 0, "content_index": 0}
    frames = [
        sse("response.created", {"type": "response.created", "sequence_number": 0, "response": pending}),
        sse(
            "response.in_progress",
            {"type": "response.in_progress", "sequence_number": 1, "response": pending},
        ),
        sse(
            "response.output_item.added",
            {
                "type": "response.output_item.added",
                "sequence_number": 2,
                "output_index": 0,
                "item": _item(item_id, "in_progress", []),
            },
        ),
        sse(
            "response.content_part.added",
            {"type": "response.content_part.added", "sequence_number": 3, **ids, "part": _part("")},
        ),
    ]
    # Deltas are the bulk of a stream: assemble them from bytes instead of dumping a dict each.
    delta_head = (
        b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
        b'"item_id":"' + item_id.encode() + b'","output_index":0,"content_index":0,"sequence_number":'
    )
    seq = 4
    for chunk_json in _json_chunks(chunks):
        frames.append(delta_head + str(seq).encode() + b',"delta":' + chunk_json + b',"logprobs":[]}\n\n')
        seq += 1
    final_event = f"response.{final_status}"
    tail: list[tuple[str, dict[str, Any]]] = [
        ("response.output_text.done", {**ids, "text": text, "logprobs": []}),
        ("response.content_part.done", {**ids, "part": _part(text)}),
        ("response.output_item.done", {"output_index": 0, "item": done_item}),
        (final_event, {"response": _response(call, rid, created, final_status, [done_item], usage)}),
    ]
    for offset, (event, payload) in enumerate(tail):
        frames.append(sse(event, {"type": event, "sequence_number": seq + offset, **payload}))
    return frames


def _argument_pieces(arguments: str) -> tuple[str, ...]:
    """The arguments in three deltas, cut mid-token as real streams do."""
    a, b = len(arguments) // 3, 2 * len(arguments) // 3
    return arguments[:a], arguments[a:b], arguments[b:]


def _item_frames(
    call: Call, rid: str, created: int, final_status: str, usage: dict[str, Any], done_item: dict[str, Any]
) -> list[bytes]:
    """The stream of a response whose one output item is not a message (a function call, with its
    argument deltas, or a compaction)."""
    pending = _response(call, rid, created, "in_progress", [], None)
    function = done_item["type"] == "function_call"
    added = {**done_item, "status": "in_progress", "arguments": ""} if function else done_item
    ids = {"item_id": done_item["id"], "output_index": 0}
    events: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"response": pending}),
        ("response.in_progress", {"response": pending}),
        ("response.output_item.added", {"output_index": 0, "item": added}),
    ]
    if function:
        pieces = _argument_pieces(done_item["arguments"])
        events += [("response.function_call_arguments.delta", {**ids, "delta": p}) for p in pieces]
        events.append(("response.function_call_arguments.done", {**ids, "arguments": done_item["arguments"]}))
    events += [
        ("response.output_item.done", {"output_index": 0, "item": done_item}),
        (
            f"response.{final_status}",
            {"response": _response(call, rid, created, final_status, [done_item], usage)},
        ),
    ]
    return [sse(e, {"type": e, "sequence_number": n, **p}) for n, (e, p) in enumerate(events)]
