"""The OpenAI Responses API over WebSocket (``GET …/responses`` with an upgrade), as Codex uses it.

Each ``{"type": "response.create", …}`` text frame is answered with the events the SSE stream would carry,
one JSON text frame each (``response.created`` … ``response.completed``). State is per connection, as at
the vendor: a ``previous_response_id`` this connection did not produce is refused with an ``error`` frame
(``previous_response_not_found``), and ``generate: false`` (a warm-up) answers an empty output whose usage
counts the input only.

Every connection is recorded (endpoint ``responses.websocket``, with its ``connection`` id) and so is every
turn (endpoint ``responses``, method ``WS``, the same ``connection``), so a test can count upstream
connections per credential. Behaviours apply per turn as they do per HTTP request (error modes answer an
``error`` frame, ``cut`` closes the connection halfway through the turn, ``slow`` delays each frame); a
behaviour whose ``path`` is ``#websocket`` applies to the handshake only (an error mode refuses the upgrade),
and one whose ``path`` is ``#websocket-close`` closes the connection after the next turn has been answered
(as a vendor that ends idle or old connections does).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from . import openai, responses
from .common import Call, RequestRecord, new_id, now
from .switches import ERROR_MODES, Behaviour

HANDSHAKE_BEHAVIOUR_PATH = "#websocket"
CLOSE_AFTER_TURN_PATH = "#websocket-close"


def install(app: web.Application, state_key: web.AppKey[Any]) -> None:
    """Route WebSocket upgrades on every path ending in ``/responses`` (before the catch-all)."""
    app.router.add_route("GET", "/{prefix:.*}responses", _handler(state_key))


def _handler(state_key: web.AppKey[Any]) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        if request.headers.get("upgrade", "").lower() != "websocket":
            return openai_error_response(404, "invalid_request_error", "Use a WebSocket for GET /responses.")
        return await _serve(request, request.app[state_key])

    return handle


def openai_error_response(status: int, kind: str, message: str, code: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def _record(
    request: web.Request, key: str | None, endpoint: str, connection: str, **fields: Any
) -> RequestRecord:
    record = RequestRecord(
        method=fields.pop("method", "GET"),
        path=request.path,
        query=dict(request.query),
        headers={k.lower(): v for k, v in request.headers.items()},
        json=fields.pop("json", None),
        vendor="openai",
        endpoint=endpoint,
        model=fields.pop("model", ""),
        stream=True,
        api_key=key,
        mode="ok",
        status=None,
        usage=None,
        tokens=None,
        text="",
        completed=True,
        request_id=new_id("req_"),
        time=time.time(),
        connection=connection,
    )
    record.update(fields)
    return record


async def _serve(request: web.Request, state: Any) -> web.StreamResponse:
    key = openai.extract_key(request)
    connection = new_id("wsconn_")
    handshake = _record(request, key, "responses.websocket", connection)
    state.add_record(handshake)
    if key is None:
        handshake["status"] = 401
        return openai_error_response(401, "invalid_request_error", openai.MISSING_KEY_MESSAGE)
    refusal = _marked_behaviour(state, key, HANDSHAKE_BEHAVIOUR_PATH)
    if refusal is not None and refusal.mode in ERROR_MODES:
        status, kind, message, code = openai._ERRORS[refusal.mode]
        handshake["status"] = status
        return openai_error_response(status, kind, message, code)
    ws = web.WebSocketResponse(max_msg_size=0, heartbeat=None)
    await ws.prepare(request)
    handshake["status"] = 101
    produced: set[str] = set()  # response ids of this connection: what previous_response_id may name
    async for message in ws:
        if message.type != WSMsgType.TEXT:
            if message.type == WSMsgType.BINARY:
                await _send_error(ws, 400, "invalid_request_error", "Frames must be JSON text.", None)
                continue
            break
        if not await _turn(request, ws, state, key, connection, message.data, produced):
            break  # the connection was cut on purpose (a `cut` behaviour)
    return ws


def _marked_behaviour(state: Any, key: str, marker: str) -> Behaviour | None:
    """A behaviour aimed at the connection (its ``path`` is `marker`): only those are consumed here."""
    snapshot = state.behaviours.snapshot()
    aimed = any(b.get("path") == marker for s in (key, "*") for b in snapshot.get(s, ()))
    return state.behaviours.take(key, marker) if aimed else None


async def _send_error(
    ws: web.WebSocketResponse,
    status: int,
    kind: str,
    message: str,
    code: str | None,
    param: str | None = None,
) -> None:
    frame = {"type": "error", "status": status, "error": {"type": kind, "code": code, "message": message}}
    frame["error"]["param"] = param
    await ws.send_str(orjson.dumps(frame).decode())


async def _turn(
    request: web.Request,
    ws: web.WebSocketResponse,
    state: Any,
    key: str,
    connection: str,
    text: str,
    produced: set[str],
) -> bool:
    """Answer one frame; False when the connection was closed on purpose."""
    try:
        frame = orjson.loads(text)
    except orjson.JSONDecodeError:
        frame = None
    if not isinstance(frame, dict) or frame.get("type") != "response.create":
        await _send_error(ws, 400, "invalid_request_error", "Expected a response.create event.", None, "type")
        return True
    body = {k: v for k, v in frame.items() if k != "type"}
    model = str(body.get("model") or "")
    record = _record(request, key, "responses", connection, method="WS", json=body, model=model)
    state.add_record(record)
    behaviour = state.resolve(key, request.path, request.headers)
    record["mode"] = behaviour.mode
    if behaviour.latency_ms:
        await asyncio.sleep(behaviour.latency_ms / 1000)
    if behaviour.mode in ERROR_MODES or behaviour.mode == "html":
        status, kind, message, code = openai._ERRORS.get(behaviour.mode, openai._ERRORS["500"])
        record["status"] = status
        await _send_error(ws, status, kind, message, code)
        return True
    previous = body.get("previous_response_id")
    if previous is not None and previous not in produced:
        record["status"] = 400
        message = f"Previous response with id '{previous}' not found."
        await _send_error(
            ws, 400, "invalid_request_error", message, "previous_response_not_found", "previous_response_id"
        )
        return True
    call = Call(request, body, model, behaviour, record, record["request_id"], state.words)
    record["status"] = 200
    if body.get("generate") is False:
        rid, frames = _warm_up(call)
        cut_at = None
    else:
        rid, frames, cut_at = _events(call)
    sent = frames if cut_at is None else frames[:cut_at]
    delay = behaviour.delay_ms / 1000 if behaviour.mode == "slow" else 0.0
    for event in sent:
        await ws.send_str(event.decode())
        if delay:
            await asyncio.sleep(delay)
    if cut_at is not None:
        transport = request.transport
        if transport is not None:  # dropped without a close frame, like a connection that broke
            transport.close()
        return False
    produced.add(rid)
    if _marked_behaviour(state, key, CLOSE_AFTER_TURN_PATH) is not None:
        await ws.close()
        return False
    return True


def _data(frame: bytes) -> bytes:
    """The JSON of one rendered SSE frame (``event: …\\ndata: {…}\\n\\n``)."""
    return frame.split(b"data: ", 1)[1].rstrip(b"\n")


def _events(call: Call) -> tuple[str, list[bytes], int | None]:
    """The SSE stream's events for this request, as frame payloads; and where a ``cut`` stops."""
    answer = responses.plan_answer(call)
    answer.report_streamed(call)
    return answer.rid, [_data(f) for f in answer.frames], answer.cut_at


def _warm_up(call: Call) -> tuple[str, list[bytes]]:
    """``generate: false``: the response exists (its id can be continued) but nothing is generated."""
    inp = call.input_tokens()
    usage = responses._usage(call, inp, 0)
    b = call.behaviour
    norm = {
        "input_tokens": inp,
        "output_tokens": 0,
        "cache_read_input_tokens": b.cache_read,
        "cache_creation_input_tokens": b.cache_creation,
    }
    rid, created = new_id("resp_"), now()
    pending = responses._response(call, rid, created, "in_progress", [], None)
    done = responses._response(call, rid, created, "completed", [], usage)
    call.report(usage, norm, "")
    events = [
        {"type": "response.created", "sequence_number": 0, "response": pending},
        {"type": "response.completed", "sequence_number": 1, "response": done},
    ]
    return rid, [orjson.dumps(e) for e in events]
