"""Outbound proxies for tests: an HTTP forward proxy and a SOCKS5 proxy, each a plain tunnel.

They run in a thread with their own event loop, record who connected and with which
credentials, and pass bytes through unchanged.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import struct
import threading
from dataclasses import dataclass, field


@dataclass
class Seen:
    connections: int = 0
    credentials: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    with contextlib.suppress(Exception):
        writer.close()


class TunnelProxy:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.seen = Seen()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> TunnelProxy:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._thread.start()
        asyncio.run_coroutine_threadsafe(asyncio.start_server(self._handle, sock=sock), self._loop).result(
            timeout=5
        )
        return self

    def __exit__(self, *_exc: object) -> None:
        async def shutdown() -> None:
            tunnels = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tunnels:
                task.cancel()
            await asyncio.gather(*tunnels, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.seen.connections += 1
        try:
            if self.kind == "socks5":
                target = await self._socks5(reader, writer)
                head = b""
            else:
                target, head = await self._http(reader)
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            writer.close()
            return
        self.seen.targets.append(f"{target[0]}:{target[1]}")
        up_reader, up_writer = await asyncio.open_connection(*target)
        up_writer.write(head)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    async def _http(self, reader: asyncio.StreamReader) -> tuple[tuple[str, int], bytes]:
        """Absolute-form request: the origin server accepts it as is, so forward the bytes untouched."""
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *lines = head.decode("latin-1").split("\r\n")
        url = request_line.split(" ")[1]
        host_port = url.split("://", 1)[1].split("/", 1)[0]
        host, port = host_port.rsplit(":", 1)
        for line in lines:
            name, _, value = line.partition(":")
            if name.lower() == "proxy-authorization":
                scheme, _, token = value.strip().partition(" ")
                if scheme.lower() == "basic":
                    self.seen.credentials.append(base64.b64decode(token).decode())
        return (host, int(port)), head

    async def _socks5(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tuple[str, int]:
        version, count = await reader.readexactly(2)
        methods = await reader.readexactly(count)
        if version != 5:
            raise ValueError("not SOCKS5")
        if 2 in methods:
            writer.write(b"\x05\x02")
            await reader.readexactly(1)
            user = (await reader.readexactly((await reader.readexactly(1))[0])).decode()
            password = (await reader.readexactly((await reader.readexactly(1))[0])).decode()
            self.seen.credentials.append(f"{user}:{password}")
            writer.write(b"\x01\x00")
        else:
            writer.write(b"\x05\x00")
        _ver, _cmd, _rsv, atyp = await reader.readexactly(4)
        if atyp == 1:
            host = socket.inet_ntoa(await reader.readexactly(4))
        elif atyp == 3:
            host = (await reader.readexactly((await reader.readexactly(1))[0])).decode()
        else:
            raise ValueError("IPv6 not needed here")
        (port,) = struct.unpack("!H", await reader.readexactly(2))
        writer.write(b"\x05\x00\x00\x01" + socket.inet_aton("127.0.0.1") + struct.pack("!H", 0))
        await writer.drain()
        return host, port
