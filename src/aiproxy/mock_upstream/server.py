"""The aiohttp application: request dispatch, recording and the ``/__mock/*`` admin endpoints."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDictProxy

from . import bedrock, oauth, responses_ws
from .body_encoding import decoded_body
from .common import Call, RequestRecord, new_id
from .responses_stored import STORED, StoredResponses
from .routing import Route, classify
from .switches import ERROR_MODES, Behaviour, BehaviourStore, header_overrides

DEFAULT_WORDS = 8
# Claude Code and Codex send multi-megabyte contexts; aiohttp's default 1 MiB limit would reject them.
MAX_BODY_BYTES = 256 * 1024 * 1024
_JSON = {"Content-Type": "application/json"}


class MockState:
    """Mutable state of one mock: configured behaviours and the record of requests."""

    def __init__(self, *, words: int = DEFAULT_WORDS, max_records: int | None = None) -> None:
        self.words = words
        # None = keep everything; 0 = keep nothing (benchmarks); N = keep the most recent N..2N.
        self.max_records = max_records
        self.behaviours = BehaviourStore()
        self.requests: list[RequestRecord] = []
        self.default_behaviour = Behaviour()
        # Requests being answered per upstream credential, and the most at once since the last reset:
        # what a test of the relay's concurrency limits checks from the upstream's side.
        self.in_flight: dict[str, int] = {}
        self.peak: dict[str, int] = {}

    def resolve(self, key: str | None, path: str, headers: CIMultiDictProxy[str]) -> Behaviour:
        stored = self.behaviours.take(key, path) or self.default_behaviour
        return header_overrides(stored, headers)

    def add_record(self, record: RequestRecord) -> None:
        if self.max_records == 0:
            return
        self.requests.append(record)
        # Trimming by halves keeps appends amortised O(1) for long benchmark runs.
        if self.max_records is not None and len(self.requests) >= 2 * self.max_records:
            del self.requests[: len(self.requests) - self.max_records]

    def enter(self, key: str) -> None:
        now = self.in_flight[key] = self.in_flight.get(key, 0) + 1
        if now > self.peak.get(key, 0):
            self.peak[key] = now

    def leave(self, key: str) -> None:
        self.in_flight[key] -= 1

    def reset(self) -> None:
        # Clear in place: tests hold references to ``requests``. Requests still being answered stay
        # counted, so the peak starts again from them.
        self.behaviours.clear()
        self.requests.clear()
        self.peak = {key: n for key, n in self.in_flight.items() if n}


STATE = web.AppKey("mock_upstream_state", MockState)


def build_app(*, words: int = DEFAULT_WORDS, max_records: int | None = None) -> web.Application:
    """Build the mock upstream application.

    ``words`` is the default reply length in chunks (= output tokens); ``max_records`` bounds the
    request record (None = unbounded, 0 = record nothing).
    """
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[STATE] = MockState(words=words, max_records=max_records)
    app[STORED] = StoredResponses(keep=max_records != 0)  # benchmarks (record nothing) keep none
    app.router.add_post("/__mock/behaviour", _set_behaviour)
    app.router.add_get("/__mock/behaviour", _get_behaviour)
    app.router.add_post("/__mock/reset", _reset)
    app.router.add_get("/__mock/requests", _get_requests)
    app.router.add_delete("/__mock/requests", _clear_requests)
    app.router.add_get("/__mock/concurrency", _get_concurrency)
    app.router.add_get("/__mock/health", _health)
    bedrock.install(app)
    oauth.add_routes(app)  # the fake OAuth providers and Code Assist (see oauth.py)
    responses_ws.install(app, STATE)  # the Responses API over WebSocket
    app.router.add_route("*", "/{tail:.*}", _dispatch)
    return app


async def _dispatch(request: web.Request) -> web.StreamResponse:
    route = classify(request)
    if route is None:
        return _json(
            {
                "error": {
                    "message": f"mock upstream: no route for {request.method} {request.path}",
                    "type": "not_found_error",
                    "code": 404,
                }
            },
            404,
        )
    state = request.app[STATE]
    body, bad_json = await _read_json(request)
    key = route.vendor.extract_key(request)
    call = _new_call(request, route, body, key, state)
    state.add_record(call.record)
    if bad_json:
        return route.vendor.error(call, "400", "The request body is not valid JSON.")
    if key is None:
        return route.vendor.error(call, "401", route.vendor.missing_key_message)
    refused = oauth.refusal_message(request.app, route.vendor.name, key)  # a revoked/expired OAuth token
    if refused is not None:
        return route.vendor.error(call, "401", refused)
    try:
        call.behaviour = state.resolve(key, request.path, request.headers)
    except (ValueError, TypeError) as exc:
        return route.vendor.error(call, "400", f"mock upstream: bad x-mock-* header: {exc}")
    call.record["mode"] = call.behaviour.mode
    state.enter(key)
    try:  # until the answer's last byte is written, or the client has gone
        return await _answer(call, route)
    finally:
        state.leave(key)


async def _answer(call: Call, route: Route) -> web.StreamResponse:
    behaviour = call.behaviour
    if behaviour.latency_ms:
        await asyncio.sleep(behaviour.latency_ms / 1000)
    if behaviour.mode in ERROR_MODES:
        return route.vendor.error(call, behaviour.mode)
    if behaviour.mode == "html":  # what a gateway or CDN in front of a vendor answers when it fails
        call.record["status"] = 502
        page = behaviour.body or "<html><body><h1>502 Bad Gateway</h1></body></html>"
        return web.Response(status=502, text=page, content_type="text/html")
    return await route.handler(call)


async def _read_json(request: web.Request) -> tuple[dict[str, Any], bool]:
    if not request.body_exists:
        return {}, False
    raw = decoded_body(request.headers.get("content-encoding", ""), await request.read())
    if not raw:
        return {}, False
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}, True
    return (body, False) if isinstance(body, dict) else ({}, True)


def _new_call(
    request: web.Request, route: Route, body: dict[str, Any], key: str | None, state: MockState
) -> Call:
    model = body.get("model") or route.model
    model = model if isinstance(model, str) else str(model)
    request_id = new_id("req_")
    record = RequestRecord(
        method=request.method,
        path=request.path,
        query=dict(request.query),
        headers={k.lower(): v for k, v in request.headers.items()},
        json=body if request.method == "POST" else None,
        vendor=route.vendor.name,
        endpoint=route.endpoint,
        model=model,
        stream=bool(body.get("stream")) or route.endpoint == "streamGenerateContent",
        api_key=key,
        mode="ok",
        status=None,
        usage=None,
        tokens=None,
        text="",
        completed=True,
        request_id=request_id,
        time=time.time(),
    )
    return Call(
        request=request,
        body=body,
        model=model,
        behaviour=state.default_behaviour,
        record=record,
        request_id=request_id,
        default_words=state.words,
    )


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, headers=_JSON)


async def _set_behaviour(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        data = orjson.loads(await request.read())
        items = data if isinstance(data, list) else [data]
        parsed = [(Behaviour.from_json(item), bool(item.get("append", False))) for item in items]
    except (orjson.JSONDecodeError, ValueError, TypeError, AttributeError) as exc:
        return _json({"ok": False, "error": str(exc)}, 400)
    for behaviour, append in parsed:
        state.behaviours.set(behaviour, append=append)
    return _json({"ok": True, "behaviours": state.behaviours.snapshot()})


async def _get_behaviour(request: web.Request) -> web.Response:
    return _json(request.app[STATE].behaviours.snapshot())


async def _reset(request: web.Request) -> web.Response:
    request.app[STATE].reset()
    return _json({"ok": True})


async def _get_requests(request: web.Request) -> web.Response:
    records = request.app[STATE].requests
    limit = request.query.get("limit")
    if limit is not None and limit.isdigit():
        records = records[-int(limit) :] if int(limit) else []
    return _json([_serialisable(record) for record in records])


def _serialisable(record: Any) -> Any:
    """A record whose body nests deeper than JSON encoders go is listed without that body."""
    try:
        orjson.dumps(record)
    except orjson.JSONEncodeError:
        return {**record, "json": "<body nested too deeply to list>"}
    return record


async def _get_concurrency(request: web.Request) -> web.Response:
    """Per upstream credential: requests being answered now, and the most at once since the last reset."""
    state = request.app[STATE]
    return _json({"in_flight": {k: n for k, n in state.in_flight.items() if n}, "peak": state.peak})


async def _clear_requests(request: web.Request) -> web.Response:
    request.app[STATE].requests.clear()
    return _json({"ok": True})


async def _health(request: web.Request) -> web.Response:
    return _json({"ok": True})
