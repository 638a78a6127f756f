"""ASGI glue: proxy paths go to the gateway as raw ASGI (no framework on the hot path),
everything else to the FastAPI application."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .routes import PREFLIGHT_PATHS, is_gateway_path

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY = 64 * 1024 * 1024


class BodyTooLarge(Exception):
    pass


async def read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > MAX_BODY:
                raise BodyTooLarge
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def send_whole(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Dispatcher:
    """The process's ASGI entry point: gateway first, then the console/API application."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if scope["method"] == "HEAD" and path in PREFLIGHT_PATHS:
                # Claude Code probes its base URL before the first call; answer cheaply.
                await send_whole(send, 200, [], b"")
                return
            if is_gateway_path(path):
                await self.app.state.gateway.handle(scope, receive, send)
                return
        elif scope["type"] == "websocket" and is_gateway_path(scope["path"]):
            from .websocket import serve_socket  # on use: it depends on modules that import this one

            await serve_socket(self.app.state.gateway, scope, receive, send)
            return
        await self.app(scope, receive, send)
