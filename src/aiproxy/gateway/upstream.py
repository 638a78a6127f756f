"""Talking to vendors: the HTTP client, WebSocket sessions, and the answer headers a client gets.

Requests are built by each vendor's provider (`providers/`): only the client headers the
vendor's protocol uses pass through, the account's credentials are added, and
`accept-encoding: identity` keeps answers uncompressed, so the relay can read usage from them
while still passing them on unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
from aiohttp_socks import ProxyConnector

from .http_client import HttpClient

# Answer headers a client never gets from the vendor (lower-cased names, as the HTTP client keeps them).
DROP_RESPONSE_HEADERS = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"transfer-encoding",
        b"content-length",
        b"content-encoding",
        b"set-cookie",
        b"proxy-authenticate",
        b"trailer",
        b"upgrade",
        b"server",
        b"date",
        b"alt-svc",
        b"via",
    }
)


class UpstreamClients:
    """Where vendor calls go out: `http` for every HTTP exchange, aiohttp sessions for WebSockets.

    WebSocket connections (the Responses API's socket mode) keep aiohttp's client: one direct
    session (HTTP proxies go through it per connection), one per SOCKS proxy.
    """

    def __init__(self) -> None:
        self.http = HttpClient()
        self._direct: aiohttp.ClientSession | None = None
        self._socks: dict[str, aiohttp.ClientSession] = {}
        self._lock = asyncio.Lock()

    @staticmethod
    def _session(connector: aiohttp.BaseConnector) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Content-Type"),
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def websocket_session(self, proxy_url: str | None) -> tuple[aiohttp.ClientSession, str | None]:
        """The aiohttp session for a WebSocket and the `proxy=` argument for it."""
        if not proxy_url or proxy_url.startswith(("http://", "https://")):
            if self._direct is None:
                connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, enable_cleanup_closed=True)
                self._direct = self._session(connector)
            return self._direct, proxy_url
        session = self._socks.get(proxy_url)
        if session is None:
            async with self._lock:
                session = self._socks.get(proxy_url)
                if session is None:
                    session = self._session(ProxyConnector.from_url(proxy_url, limit=0, rdns=True))
                    self._socks[proxy_url] = session
        return session, None

    async def close(self) -> None:
        await self.http.close()
        sessions = [s for s in (self._direct, *self._socks.values()) if s is not None]
        for session in sessions:
            with contextlib.suppress(Exception):
                await session.close()
        self._direct = None
        self._socks.clear()
