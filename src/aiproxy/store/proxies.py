"""Outbound proxies: the URL the HTTP client is given, and a real connectivity test.

The test proves that something speaking the proxy's protocol answers at host:port: a SOCKS5
greeting (and RFC 1929 login when the proxy asks for it) or an HTTP `CONNECT`. It never raises
for network failures; the admin sees `success: false` with the reason instead.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import time
from contextlib import suppress
from typing import Any
from urllib.parse import quote

from ..security.secretbox import SecretBox
from .models import ProxyConfig

PROXY_TYPES = ("http", "socks5")
DEFAULT_TEST_TIMEOUT = 10.0
_SOCKS_VERSION = 5
_NO_AUTH, _USER_PASS, _NO_METHOD = 0x00, 0x02, 0xFF
_MAX_STATUS_LINE = 1024


class ProxyTestFailed(Exception):
    """The proxy was reached but did not answer the way its type promises."""


def _host_part(host: str) -> str:
    # An IPv6 literal must be bracketed inside a URL or a CONNECT target.
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def proxy_url(proxy: ProxyConfig, box: SecretBox) -> str:
    """`http://user:pass@host:port` or `socks5://…`, credentials percent-encoded."""
    password = box.decrypt_optional(proxy.password_encrypted) or ""
    userinfo = ""
    if proxy.username or password:
        userinfo = quote(proxy.username or "", safe="")
        if password:
            userinfo += ":" + quote(password, safe="")
        userinfo += "@"
    return f"{proxy.type}://{userinfo}{_host_part(proxy.host)}:{proxy.port}"


async def _socks5_handshake(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, username: str, password: str
) -> str:
    writer.write(bytes([_SOCKS_VERSION, 2, _NO_AUTH, _USER_PASS]))
    await writer.drain()
    reply = await reader.readexactly(2)
    if reply[0] != _SOCKS_VERSION:
        raise ProxyTestFailed("not a SOCKS5 proxy: unexpected greeting reply")
    method = reply[1]
    if method == _NO_AUTH:
        return "SOCKS5 proxy answered (no authentication required)"
    if method == _NO_METHOD:
        raise ProxyTestFailed("SOCKS5 proxy accepted none of the offered authentication methods")
    if method != _USER_PASS:
        raise ProxyTestFailed(f"SOCKS5 proxy chose unsupported method 0x{method:02x}")
    if not username:
        raise ProxyTestFailed("SOCKS5 proxy requires a username and password")
    user, secret = username.encode(), password.encode()
    writer.write(bytes([1, len(user)]) + user + bytes([len(secret)]) + secret)
    await writer.drain()
    status = await reader.readexactly(2)
    if status[1] != 0:
        raise ProxyTestFailed("SOCKS5 proxy rejected the username or password")
    return "SOCKS5 proxy answered and accepted the credentials"


async def _http_connect(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: str, username: str, password: str
) -> str:
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    if username or password:
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        lines.append(f"Proxy-Authorization: Basic {token}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    line = (await reader.readline())[:_MAX_STATUS_LINE].decode("latin-1").strip()
    version, _, rest = line.partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/") or not code.isdigit():
        raise ProxyTestFailed("not an HTTP proxy: unexpected reply")
    if code == "407":  # reachable, but these credentials would fail every real request
        raise ProxyTestFailed(f"HTTP proxy refused the credentials: {rest}")
    return f"HTTP proxy answered: {rest}"


def _reason(exc: Exception) -> str:
    # asyncio words a refused connect as "Connect call failed (...)"; the errno says it plainly.
    if isinstance(exc, socket.gaierror):
        return str(exc.strerror)
    if isinstance(exc, OSError) and exc.errno and exc.errno > 0:
        return os.strerror(exc.errno)
    return str(exc)


async def test_proxy(
    type: str,
    host: str,
    port: int,
    username: str = "",
    password: str = "",
    *,
    timeout: float = DEFAULT_TEST_TIMEOUT,  # noqa: ASYNC109 - one deadline for connect + handshake
    target: str | None = None,
) -> dict[str, Any]:
    """Connect to the proxy and speak its protocol once: `{"success", "latency_ms", "message"}`.

    For HTTP proxies `target` is the `host:port` asked for in the CONNECT (default: the proxy
    itself); any status line counts as an answer except 407 (wrong credentials).
    """
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                if type == "socks5":
                    message = await _socks5_handshake(reader, writer, username, password)
                else:
                    connect_to = target or f"{_host_part(host)}:{port}"
                    message = await _http_connect(reader, writer, connect_to, username, password)
            finally:
                writer.close()
                with suppress(OSError):
                    await writer.wait_closed()
        success = True
    except TimeoutError:
        success, message = False, f"no answer within {timeout:g} s"
    except asyncio.IncompleteReadError:
        success, message = False, "proxy closed the connection without answering"
    except ProxyTestFailed as exc:
        success, message = False, str(exc)
    except (OSError, ValueError) as exc:  # refused, unreachable, unresolvable, unencodable name
        success, message = False, f"connection failed: {_reason(exc)}"
    latency_ms = int((time.monotonic() - started) * 1000)
    return {"success": success, "latency_ms": latency_ms, "message": message}


test_proxy.__test__ = False  # type: ignore[attr-defined]  # not a pytest test despite the name
