"""The OpenAI Responses API over WebSocket, client side (what Codex uses when its provider allows it).

The upgrade (`GET /v1/responses` and the other Responses paths) is checked like a request without a
body: the key from the usual headers, the key's and user's status, the client filter on user agent,
path and headers. A refused handshake is answered with an HTTP error in the OpenAI shape (through the
server's `websocket.http.response` extension; without it the socket is closed with 1008) and logged
as one request-log row, like any refusal.

Frames are JSON text. Each `{"type": "response.create", …}` is one request: admitted, scheduled,
billed and logged exactly like `POST /v1/responses` with `stream: true` (one row per turn, method
`WS`, the socket's path), through the pipeline's own steps (`Gateway.handle` with `serve_parsed`).
The answer's SSE events become text frames, one event each; an error answer becomes an `error`
frame (`{"type": "error", "status": …, "error": {"type", "code", "message", "param"}}`) and the
socket stays usable. Turns are sequential: a `response.create` while one runs, or a frame that is
not a `response.create`, is refused with an error frame (and logged). Which account and which
upstream wire a turn takes is `socket_bridge.py`'s business.

A client close cancels the running turn (logged `client_gone`, billed for the usage seen), a vendor
socket that breaks mid-turn ends the client socket after that turn, and a socket idle for
`websocket_idle_timeout` seconds is closed; every slot is released with its turn.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import orjson

from .convert.sse import SSEParser
from .disconnect import DISCONNECT_EXTENSION, DisconnectSignal
from .errors import GatewayError
from .socket_bridge import TERMINAL_EVENTS, Conversation

if TYPE_CHECKING:
    from .asgi import Message, Receive, Scope, Send
    from .pipeline import Call, Gateway

HTTP_RESPONSE_EXTENSION = "websocket.http.response"
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001  # the vendor socket is gone: the client reconnects (and the relay replays)
CLOSE_POLICY = 1008  # a refused handshake where the server cannot answer it in HTTP
TURN_EVENT = "response.create"
BUSY_MESSAGE = "a response is already in progress on this socket: send the next response.create after it ends"
_NOTHING_TO_READ: dict[str, Any] = {"type": "http.request", "body": b"", "more_body": False}


async def serve_socket(gateway: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    await ResponsesSocket(gateway, scope, receive, send).run()


def error_frame(status: int, body: bytes) -> str:
    """An error answer (the OpenAI `{"error": {…}}` body) as the WebSocket's `error` event."""
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError:
        decoded = None
    detail = decoded.get("error") if isinstance(decoded, dict) else None
    if not isinstance(detail, dict):
        detail = {"type": "api_error", "code": None, "message": body[:500].decode("utf-8", "replace")}
    detail = {"type": detail.get("type") or "api_error", "code": detail.get("code"), **detail}
    detail.setdefault("param", None)
    return orjson.dumps({"type": "error", "status": status, "error": detail}).decode()


def _socket_error(data: bytes) -> bytes:
    """An SSE `error` event (code and message at the top) in the WebSocket's shape (nested `error`)."""
    try:
        decoded = orjson.loads(data)
    except orjson.JSONDecodeError:
        return data
    if not isinstance(decoded, dict) or isinstance(decoded.get("error"), dict):
        return data
    detail = {"type": "server_error", **{k: decoded.get(k) for k in ("code", "message", "param")}}
    frame: dict[str, Any] = {"type": "error", "error": detail}
    if "sequence_number" in decoded:
        frame["sequence_number"] = decoded["sequence_number"]
    return orjson.dumps(frame)


class TurnFrames:
    """The `send` of one turn's request: its HTTP answer turned into frames on the client socket."""

    __slots__ = ("_error", "_parser", "_socket", "_status")

    def __init__(self, socket: ResponsesSocket) -> None:
        self._socket = socket
        self._status = 0
        self._parser = SSEParser()
        self._error = bytearray()

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self._status = message["status"]
            return
        body = message.get("body", b"")
        more = message.get("more_body", False)
        socket = self._socket
        if self._status >= 400:
            self._error += body
            if not more:
                socket.answered = True
                await socket.send_text(error_frame(self._status, bytes(self._error)))
            return
        events = self._parser.feed(body) if body else []
        if not more:
            events += self._parser.flush()
            socket.answered = True
        for event, data in events:
            kind = socket.conversation.observe(event, data)
            if kind == "error":
                data = _socket_error(data)
            if kind in TERMINAL_EVENTS:
                socket.answered = True  # the client may send its next turn now
            await socket.send_text(data.decode("utf-8", "replace"))


class ResponsesSocket:
    def __init__(self, gateway: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
        self.gateway = gateway
        self.scope = scope
        self.receive = receive
        self._send = send
        self.conversation = Conversation(gateway)
        self.closed = False  # the client is gone (or the relay closed the socket)
        self.answered = True  # the running turn's last event has gone out (its bookkeeping may not)
        self._raw_key = ""
        self._client: str | None = None
        self._turn: asyncio.Task[None] | None = None
        self._turn_signal: DisconnectSignal | None = None

    async def run(self) -> None:
        if (await self.receive())["type"] != "websocket.connect":
            return
        if not await self._handshake():
            return
        try:
            await self._frames()
        finally:
            await self._end()

    # -- the handshake -------------------------------------------------------------------------------

    async def _handshake(self) -> bool:
        async def check(call: Call) -> None:
            raw_key, _ = await self.gateway.authenticate(call)
            if call.endpoint is None or call.endpoint.kind != "responses":
                raise GatewayError(404, "WebSocket is served on the Responses API paths only")
            self._raw_key, self._client = raw_key, call.client

        scope = {**self.scope, "type": "http", "method": "GET"}
        await self.gateway.handle(scope, self.receive, self._refuse, check)
        if not self._raw_key:
            return False
        await self._send({"type": "websocket.accept"})
        return True

    async def _refuse(self, message: Message) -> None:
        """A refused handshake's HTTP answer, as the server lets a WebSocket send one."""
        if HTTP_RESPONSE_EXTENSION in (self.scope.get("extensions") or {}):
            await self._send({**message, "type": "websocket." + message["type"]})
        elif message["type"] == "http.response.start":
            await self._send({"type": "websocket.close", "code": CLOSE_POLICY})
        self.closed = True

    # -- frames --------------------------------------------------------------------------------------

    async def _frames(self) -> None:
        idle = float(self.gateway.configs.get("websocket_idle_timeout"))
        receiving: asyncio.Future[Message] | None = None
        try:
            while True:
                if receiving is None:
                    receiving = asyncio.ensure_future(self.receive())
                busy = self._turn is not None and not self._turn.done()
                waiting: set[asyncio.Future[Any]] = {receiving, self._turn} if busy else {receiving}  # type: ignore[arg-type]
                done, _ = await asyncio.wait(
                    waiting, timeout=None if busy else idle, return_when=asyncio.FIRST_COMPLETED
                )
                if not done:  # idle: nothing running and nothing sent for too long
                    await self.close(CLOSE_NORMAL, "idle timeout")
                    return
                if self.conversation.upstream_lost and (self._turn is None or self._turn.done()):
                    await self.close(CLOSE_GOING_AWAY, "upstream connection closed")
                    return
                if receiving not in done:
                    continue  # the turn ended: the idle clock starts again
                message, receiving = receiving.result(), None
                if message["type"] == "websocket.disconnect":
                    self.closed = True
                    return
                await self._on_frame(message)
        finally:
            if receiving is not None and not receiving.done():
                receiving.cancel()

    async def _on_frame(self, message: Message) -> None:
        text = message.get("text")
        if text is None:
            raw = message.get("bytes") or b""
            text = raw.decode("utf-8", "replace")
        try:
            payload = orjson.loads(text)
        except orjson.JSONDecodeError:
            payload = None
        if not isinstance(payload, dict):
            await self._refused_turn({}, 400, "a frame must be a JSON object", "invalid_json")
            return
        if payload.get("type") != TURN_EVENT:
            message_text = f"unsupported event type {str(payload.get('type'))[:64]!r}: expected {TURN_EVENT}"
            await self._refused_turn(payload, 400, message_text, "unsupported_event_type")
            return
        previous = self._turn
        if previous is not None and not previous.done() and not self.answered:
            await self._refused_turn(payload, 400, BUSY_MESSAGE, "response_in_progress")
            return
        body = {k: v for k, v in payload.items() if k != "type"}
        body["stream"] = True  # every turn is answered event by event
        self.answered = False
        self._turn_signal = DisconnectSignal()
        self._turn = asyncio.create_task(self._run_turn(body, self._turn_signal, previous))

    def _turn_scope(self, signal: DisconnectSignal | None = None) -> Scope:
        extensions = {DISCONNECT_EXTENSION: signal or DisconnectSignal()}
        return {**self.scope, "type": "http", "method": "WS", "extensions": extensions}

    async def _nothing(self) -> Message:
        return _NOTHING_TO_READ

    async def _run_turn(
        self, body: dict[str, Any], signal: DisconnectSignal, previous: asyncio.Task[None] | None
    ) -> None:
        if previous is not None:  # answered, still logging: its slots come back before this one starts
            await asyncio.wait({previous})
        conversation = self.conversation

        async def serve(call: Call) -> None:
            call.conversation = conversation
            conversation.begin(body)
            await self.gateway.serve_parsed(call, self._raw_key, self._client, body)

        await self.gateway.handle(self._turn_scope(signal), self._nothing, TurnFrames(self).send, serve)

    async def _refused_turn(self, payload: dict[str, Any], status: int, message: str, code: str) -> None:
        """A frame that is no turn: an error frame, and its row in the request log."""

        async def refuse(call: Call) -> None:
            call.payload = {k: v for k, v in payload.items() if k != "type"}
            call.stream = True
            call.caller = await self.gateway.keys.resolve(self._raw_key)
            raise GatewayError(status, message, code=code)

        await self.gateway.handle(self._turn_scope(), self._nothing, TurnFrames(self).send, refuse)

    async def send_text(self, text: str) -> None:
        if self.closed:
            return  # the client left mid-turn: the rest of the turn is logged, not sent
        try:
            await self._send({"type": "websocket.send", "text": text})
        except OSError:  # the server's "client disconnected"
            self.closed = True

    async def close(self, code: int, reason: str) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(OSError, RuntimeError):
                await self._send({"type": "websocket.close", "code": code, "reason": reason})

    async def _end(self) -> None:
        """The socket is over: the running turn is cut (as a client disconnect) and logged, then the
        vendor socket closes."""
        turn = self._turn
        if turn is not None and not turn.done():
            self.closed = True
            signal = self._turn_signal
            # The turn may not be watching yet (still being admitted): signal until it is over.
            while not turn.done():
                if signal is not None:
                    signal.fire()
                await asyncio.wait({turn}, timeout=0.05)
        await self.conversation.close()
        await self.close(CLOSE_NORMAL, "")
