"""A capture server on 127.0.0.1 that shows what Codex sends over the Responses WebSocket and for remote
compaction, whether or not the relay serves them yet.

It records every HTTP request (method, path, query, headers, JSON body) and every WebSocket connection
(handshake headers and each frame). Turns are answered from the fake upstream: a `POST …/responses` is
passed through to it; a WebSocket `response.create` frame is sent to it as a streamed HTTP request and
every SSE event of the answer goes back as one text frame (the Responses WebSocket's framing). It answers
itself what the fake does not know: a warm-up (`generate: false`: an empty output), a compaction trigger
(input ending in `{"type": "compaction_trigger"}`: one `compaction` output item) and
`POST …/responses/compact` (a `response.compaction` object; Codex 0.169 does not call it). Run it by
hand to look at a new Codex release (each request and frame is printed as a JSON line), with Codex's
provider `base_url` at `<printed address>/v1`:

    aiproxy mock-upstream --port 8090 &
    python -m tests.clients.capture --upstream http://127.0.0.1:8090
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import orjson
from aiohttp import WSMsgType, web

from ..support import free_port

_HOP_BY_HOP = {"host", "content-length", "connection", "upgrade", "accept-encoding", "transfer-encoding"}


class Capture:
    """What the server saw: `requests` (HTTP) and `sockets` (WebSocket connections with their frames)."""

    def __init__(self, upstream: str, upstream_key: str, *, echo: bool = False) -> None:
        self.echo = echo  # print each request and frame as a JSON line (by hand)
        self.upstream = upstream.rstrip("/")
        self.upstream_key = upstream_key
        self.requests: list[dict[str, Any]] = []
        self.sockets: list[dict[str, Any]] = []
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{path:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("upgrade", "").lower() == "websocket":
            return await self._socket(request)
        raw = await request.read()
        body = orjson.loads(raw) if raw else None
        seen = {
            "time": time.time(),
            "method": request.method,
            "path": request.path,
            "query": dict(request.query),
            "headers": {str(k): v for k, v in request.headers.items()},
            "json": body,
        }
        self.requests.append(seen)
        self._show("http", seen)
        if request.path.endswith("/responses/compact"):
            return web.json_response(_compaction(body or {}))
        if _compaction_triggered(body):
            reply = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await reply.prepare(request)
            for event in _local_events(body):
                await reply.write(
                    b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"
                )
            await reply.write_eof()
            return reply
        async with aiohttp.ClientSession() as session:
            upstream = await session.request(
                request.method,
                self.upstream + request.path,
                data=raw,
                headers=self._upstream_headers(request.headers),
            )
            reply = web.StreamResponse(status=upstream.status)
            reply.content_type = upstream.content_type
            await reply.prepare(request)
            async for piece in upstream.content.iter_any():
                await reply.write(piece)
            await reply.write_eof()
            return reply

    def _show(self, kind: str, what: dict[str, Any]) -> None:
        if self.echo:
            print(orjson.dumps({"kind": kind, **what}).decode(), flush=True)

    def _upstream_headers(self, headers: Any) -> dict[str, str]:
        out = {
            k: v
            for k, v in headers.items()
            if k.lower() not in _HOP_BY_HOP and not k.lower().startswith("sec-")
        }
        out["authorization"] = f"Bearer {self.upstream_key}"
        return out

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        record: dict[str, Any] = {
            "time": time.time(),
            "path": request.path,
            "query": dict(request.query),
            "headers": {str(k): v for k, v in request.headers.items()},
            "frames": [],
            "sent": [],
        }
        self.sockets.append(record)
        self._show("websocket", {k: record[k] for k in ("path", "query", "headers")})
        ws = web.WebSocketResponse(compress=True)
        await ws.prepare(request)
        async with aiohttp.ClientSession() as session:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    record["frames"].append({"binary_or_control": str(message.type)})
                    continue
                frame = orjson.loads(message.data)
                record["frames"].append(frame)
                self._show("frame", frame)
                if frame.get("type") == "response.create":
                    await self._answer(session, request, ws, frame, record)
        return ws

    async def _answer(
        self,
        session: aiohttp.ClientSession,
        request: web.Request,
        ws: web.WebSocketResponse,
        frame: dict[str, Any],
        record: dict[str, Any],
    ) -> None:
        if frame.get("generate") is False or _compaction_triggered(frame):
            for event in _local_events(frame):
                record["sent"].append(event["type"])
                await ws.send_str(orjson.dumps(event).decode())
            return
        body = {k: v for k, v in frame.items() if k not in ("type", "generate")} | {"stream": True}
        body.pop("previous_response_id", None)
        async with session.post(
            self.upstream + "/v1/responses", json=body, headers=self._upstream_headers(request.headers)
        ) as upstream:
            async for line in upstream.content:
                if line.startswith(b"data: "):
                    event = line[6:].strip().decode()
                    record["sent"].append(orjson.loads(event)["type"])
                    await ws.send_str(event)


def _compaction_triggered(body: Any) -> bool:
    """Codex's remote compaction: a Responses request whose last input item is a `compaction_trigger`."""
    items = body.get("input") if isinstance(body, dict) else None
    return isinstance(items, list) and bool(items) and items[-1].get("type") == "compaction_trigger"


_USAGE = {
    "input_tokens": 100,
    "input_tokens_details": {"cached_tokens": 0},
    "output_tokens": 10,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 110,
}


def _local_events(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The answer to a warm-up (`generate: false`: no output) or to a compaction trigger (one
    `compaction` output item), as the vendor streams it."""
    rid = "resp_" + uuid.uuid4().hex
    base = {"id": rid, "object": "response", "created_at": int(time.time()), "model": body.get("model")}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": base | {"status": "in_progress"}}
    ]
    output = []
    if body.get("generate") is not False:
        item = {"id": "cmp_" + uuid.uuid4().hex, "type": "compaction", "encrypted_content": uuid.uuid4().hex}
        output.append(item)
        events.append({"type": "response.output_item.added", "output_index": 0, "item": item})
        events.append({"type": "response.output_item.done", "output_index": 0, "item": item})
    done = base | {"status": "completed", "output": output, "usage": _USAGE}
    events.append({"type": "response.completed", "response": done})
    return [event | {"sequence_number": n} for n, event in enumerate(events)]


def _compaction(body: dict[str, Any]) -> dict[str, Any]:
    items = body.get("input") if isinstance(body.get("input"), list) else []
    kept = [
        i
        for i in items
        if isinstance(i, dict) and i.get("type", "message") == "message" and i.get("role") == "user"
    ]
    summary = "summary-" + uuid.uuid4().hex
    return {
        "id": "resp_" + uuid.uuid4().hex,
        "object": "response.compaction",
        "created_at": int(time.time()),
        "output": [
            *kept,
            {"id": "cmp_" + uuid.uuid4().hex, "type": "compaction", "encrypted_content": summary},
        ],
        "usage": {
            "input_tokens": 100,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 10,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 110,
        },
    }


@contextmanager
def capture_server(upstream: str, upstream_key: str) -> Iterator[Capture]:
    """The capture server in a background thread until the block ends."""
    capture = Capture(upstream, upstream_key)
    capture.port = free_port()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(capture.app())
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", capture.port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield capture
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.run_until_complete(runner.cleanup())
        loop.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", required=True, help="the fake upstream's base URL")
    parser.add_argument("--upstream-key", default="capture-key")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    capture = Capture(args.upstream, args.upstream_key, echo=True)
    capture.port = args.port or free_port()
    print(f"capturing on {capture.base_url}", file=sys.stderr, flush=True)
    web.run_app(capture.app(), host="127.0.0.1", port=capture.port, print=None)


if __name__ == "__main__":
    main()
