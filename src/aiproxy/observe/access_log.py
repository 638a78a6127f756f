"""One log line per HTTP request: `POST /claude/v1/messages 200 812.4ms 203.0.113.7`.

Proxy requests are logged to `aiproxy.access.proxy` (the `proxy` file; the gateway's request id is
still set when the line is written, so it ends the line) when `AIPROXY_PROXY_ACCESS_LOG` is on —
off by default: the request log already holds a row per proxy request, and a line costs the hot
path ~15 µs; everything else goes to `aiproxy.access.http` (the `http` file). Health probes are
left out: a load balancer polls them every few seconds.
The lines go to the files only (see logs.py), and cost nothing when the level is above INFO.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ..client_address import client_address
from ..gateway.routes import is_gateway_path
from .context import request_id

http_log = logging.getLogger("aiproxy.access.http")
proxy_log = logging.getLogger("aiproxy.access.proxy")

UNLOGGED_PATHS = frozenset({"/health", "/ready"})
ACCESS_FORMAT = "%s %s %d %.1fms %s"


class AccessLog:
    """ASGI middleware around the whole relay (gateway and API)."""

    def __init__(self, app: Any, *, trust_proxy_headers: bool, proxy_lines: bool) -> None:
        self.app = app
        self.trust_proxy_headers = trust_proxy_headers
        self.proxy_lines = proxy_lines

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] in UNLOGGED_PATHS
            or not http_log.isEnabledFor(logging.INFO)
            or (not self.proxy_lines and is_gateway_path(scope["path"]))
        ):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless a response starts: the application failed before answering

        async def send_status(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            # The gateway set the request id in this same task: it marks a proxy request.
            log = proxy_log if request_id.get() else http_log
            log.info(
                ACCESS_FORMAT,
                scope["method"],
                scope["path"],
                status,
                (time.perf_counter() - started) * 1000,
                self._client(scope),
            )

    def _client(self, scope: Any) -> str:
        peer = scope["client"][0] if scope.get("client") else "-"
        if not self.trust_proxy_headers:
            return peer
        headers = dict(scope["headers"])
        forwarded = headers.get(b"x-forwarded-for")
        real_ip = headers.get(b"x-real-ip")
        return client_address(
            peer,
            forwarded.decode("latin-1") if forwarded else None,
            real_ip.decode("latin-1") if real_ip else None,
            trust_proxy=True,
        )
