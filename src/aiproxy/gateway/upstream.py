"""Talking to vendors: one aiohttp session per outbound proxy, and per-family request building.

Bodies travel as bytes. Of the client's headers only those the vendor's protocol uses pass
through (an allow-list per wire protocol: versions, betas, SDK and client identification,
session ids); credentials, cookies, hop-by-hop and network headers never do, nor anything a
client invents. The account's credentials are added. `accept-encoding: identity` keeps
answers uncompressed, so the relay can read usage from them while still passing them on
unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from urllib.parse import quote

import aiohttp
from aiohttp_socks import ProxyConnector

from .errors import CLAUDE, GEMINI, OPENAI, RESPONSES
from .pool import PoolAccount

ANTHROPIC_VERSION = "2023-06-01"
_FORWARD_ANY = (b"content-type", b"accept", b"user-agent")
_FORWARD_HEADERS: dict[str, frozenset[bytes]] = {
    CLAUDE: frozenset(
        {
            *_FORWARD_ANY,
            b"anthropic-version",
            b"anthropic-beta",
            b"anthropic-dangerous-direct-browser-access",
            b"x-app",
            b"x-claude-code-session-id",
        }
    ),
    OPENAI: frozenset({*_FORWARD_ANY, b"openai-beta", b"x-client-request-id"}),
    RESPONSES: frozenset(
        {
            *_FORWARD_ANY,
            b"openai-beta",
            b"originator",
            b"version",
            b"session_id",
            b"session-id",
            b"thread-id",
            b"conversation_id",
            b"x-client-request-id",
        }
    ),
    GEMINI: frozenset({*_FORWARD_ANY, b"x-goog-api-client"}),
}
# Header families the official SDKs and CLIs send (runtime and retry metadata).
_FORWARD_PREFIXES: dict[str, tuple[bytes, ...]] = {
    CLAUDE: (b"x-stainless-",),
    OPENAI: (b"x-stainless-",),
    RESPONSES: (b"x-stainless-", b"x-codex-"),
    GEMINI: (),
}
DROP_RESPONSE_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "content-encoding",
        "set-cookie",
        "proxy-authenticate",
        "trailer",
        "upgrade",
        "server",
        "date",
        "alt-svc",
        "via",
    }
)


@dataclass(frozen=True, slots=True)
class UpstreamCall:
    url: str
    headers: dict[str, str]


def forwarded_headers(client_headers: dict[bytes, bytes], wire: str) -> dict[str, str]:
    """The client headers the vendor of `wire` needs; nothing else leaves the relay."""
    allowed = _FORWARD_HEADERS[wire]
    prefixes = _FORWARD_PREFIXES[wire]
    return {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in client_headers.items()
        if name in allowed or (prefixes and name.startswith(prefixes))
    }


def _root(base_url: str, *suffixes: str) -> str:
    """Vendor root without a trailing version segment the operator may have pasted."""
    for suffix in suffixes:
        if base_url.endswith(suffix):
            return base_url[: -len(suffix)]
    return base_url


def build_call(
    account: PoolAccount,
    route_family: str,
    *,
    model: str,
    client_headers: dict[bytes, bytes],
    query: str = "",
    gemini_action: str = "generateContent",
    gemini_version: str = "v1beta",
    count_tokens: bool = False,
) -> UpstreamCall:
    """URL and headers for one attempt on one account."""
    wire = RESPONSES if route_family == RESPONSES else account.family
    headers = forwarded_headers(client_headers, wire)
    headers["accept-encoding"] = "identity"
    creds = account.credentials
    family = account.family
    if family == CLAUDE:
        path = "/v1/messages/count_tokens" if count_tokens else "/v1/messages"
        url = _root(account.base_url, "/v1") + path + (f"?{query}" if query else "")
        if creds.get("api_key"):
            headers["x-api-key"] = creds["api_key"]
        elif creds.get("access_token"):
            headers["authorization"] = f"Bearer {creds['access_token']}"
        headers.setdefault("anthropic-version", ANTHROPIC_VERSION)
    elif family == GEMINI:
        root = _root(account.base_url, "/v1beta", "/v1")
        url = f"{root}/{gemini_version}/models/{quote(model)}:{gemini_action}"
        if query:
            url += f"?{query}"
        headers["x-goog-api-key"] = creds.get("api_key", "")
    elif account.type == "azure-openai":
        deployment = account.deployment or model
        version = account.api_version or "2024-10-21"
        url = f"{account.base_url}/openai/deployments/{quote(deployment)}/chat/completions"
        url += f"?api-version={version}"
        headers["api-key"] = creds.get("api_key", "")
    elif route_family == RESPONSES:
        if account.family == RESPONSES:
            url = account.base_url + "/responses"
        else:  # a plain OpenAI account also serves the Responses API
            url = _root(account.base_url, "/v1") + "/v1/responses"
        headers["authorization"] = f"Bearer {creds.get('api_key') or creds.get('access_token', '')}"
        if "chatgpt.com" in account.base_url:
            headers["openai-beta"] = "responses=experimental"
            if account.organization_id:
                headers["chatgpt-account-id"] = account.organization_id
    else:
        assert route_family in (OPENAI, CLAUDE)
        url = _root(account.base_url, "/v1") + "/v1/chat/completions"
        headers["authorization"] = f"Bearer {creds.get('api_key', '')}"
        if account.organization_id:
            headers["openai-organization"] = account.organization_id
    return UpstreamCall(url=url, headers=headers)


class UpstreamClients:
    """aiohttp sessions: one direct (HTTP proxies go through it per request), one per SOCKS proxy."""

    def __init__(self) -> None:
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

    def direct(self) -> aiohttp.ClientSession:
        if self._direct is None:
            connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, enable_cleanup_closed=True)
            self._direct = self._session(connector)
        return self._direct

    async def for_proxy(self, proxy_url: str | None) -> tuple[aiohttp.ClientSession, str | None]:
        """The session to use and the `proxy=` argument for it."""
        if not proxy_url or proxy_url.startswith(("http://", "https://")):
            return self.direct(), proxy_url
        session = self._socks.get(proxy_url)
        if session is None:
            async with self._lock:
                session = self._socks.get(proxy_url)
                if session is None:
                    session = self._session(ProxyConnector.from_url(proxy_url, limit=0, rdns=True))
                    self._socks[proxy_url] = session
        return session, None

    async def close(self) -> None:
        sessions = [s for s in (self._direct, *self._socks.values()) if s is not None]
        for session in sessions:
            with contextlib.suppress(Exception):
                await session.close()
        self._direct = None
        self._socks.clear()
