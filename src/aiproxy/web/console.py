"""Serves the built console: files under ``/assets/`` and ``index.html`` for the console's own pages.

The console is a single-page application, so any browser navigation that is not an API, health,
metrics or proxy path gets ``index.html`` and the page's router takes over. Requests that do not ask
for HTML keep getting the API's JSON 404, so an SDK calling a wrong path still sees a JSON error.
Asset names carry a content hash (Vite), so they are cached for a year; ``index.html`` never is.
Compressed copies are made on first use and kept (the whole console is a few megabytes).
"""

from __future__ import annotations

import gzip
import mimetypes
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

STATIC_DIR = Path(__file__).parent / "static"
# Paths the console never answers: the JSON API, probes, metrics and every proxy prefix.
NOT_CONSOLE = (
    "/api/",
    "/api",
    "/health",
    "/ready",
    "/metrics",
    "/v1/",
    "/v1beta/",
    "/claude",
    "/openai",
    "/gemini",
    "/responses",
)
COMPRESSIBLE = (".js", ".css", ".html", ".svg", ".json", ".txt", ".map")
MIN_COMPRESSED = 1024
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        b"img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
        b"frame-ancestors 'none'; base-uri 'self'; form-action 'self'",
    ),
]


class _File:
    __slots__ = ("body", "content_type", "gzipped")

    def __init__(self, body: bytes, content_type: bytes) -> None:
        self.body = body
        self.content_type = content_type
        self.gzipped: bytes | None = None


class Console:
    """ASGI wrapper in front of the API application; ``state`` is the API's (the gateway reads it)."""

    def __init__(self, app: Any, static_dir: Path = STATIC_DIR) -> None:
        self.app = app
        self._dir = static_dir.resolve()
        self._files: dict[str, _File | None] = {}

    @property
    def state(self) -> Any:
        return self.app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            path: str = scope["path"]
            if path.startswith("/assets/"):
                await self._serve(scope, send, path[1:], immutable=True)
                return
            if path == "/" or (not path.startswith(NOT_CONSOLE) and _wants_html(scope)):
                await self._serve(scope, send, "index.html", immutable=False)
                return
        await self.app(scope, receive, send)

    def _file(self, relative: str) -> _File | None:
        if relative in self._files:
            return self._files[relative]
        found: _File | None = None
        candidate = (self._dir / relative).resolve()
        # Only files inside the static directory: "/assets/../../secret" resolves outside it.
        if candidate.is_relative_to(self._dir) and candidate.is_file():
            kind = mimetypes.guess_type(candidate.name)[0] or "application/octet-stream"
            if kind.startswith("text/") or kind in ("application/javascript", "application/json"):
                kind += "; charset=utf-8"
            found = _File(candidate.read_bytes(), kind.encode())
            if candidate.suffix in COMPRESSIBLE and len(found.body) >= MIN_COMPRESSED:
                found.gzipped = gzip.compress(found.body, compresslevel=6, mtime=0)
        if len(self._files) < 4096:  # a bound: unknown asset names are remembered as missing, but not forever
            self._files[relative] = found
        return found

    async def _serve(self, scope: Scope, send: Send, relative: str, *, immutable: bool) -> None:
        file = self._file(relative)
        if file is None:
            if relative == "index.html":
                body = b"The console is not built: run `make web` (needs Node.js) or reinstall the package."
                await _send(scope, send, 503, [(b"content-type", b"text/plain; charset=utf-8")], body)
            else:
                await _send(scope, send, 404, [(b"content-type", b"text/plain; charset=utf-8")], b"not found")
            return
        headers = [
            (b"content-type", file.content_type),
            (b"cache-control", b"public, max-age=31536000, immutable" if immutable else b"no-cache"),
            *SECURITY_HEADERS,
        ]
        body = file.body
        if file.gzipped is not None:
            headers.append((b"vary", b"accept-encoding"))
            if b"gzip" in _header(scope, b"accept-encoding"):
                headers.append((b"content-encoding", b"gzip"))
                body = file.gzipped
        await _send(scope, send, 200, headers, body)


def _header(scope: Scope, name: bytes) -> bytes:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return b""


def _wants_html(scope: Scope) -> bool:
    return b"text/html" in _header(scope, b"accept")


async def _send(
    scope: Scope, send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
