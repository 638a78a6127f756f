"""Hold many streaming requests open at once, cheaply: N connections, one request each.

Where ``loadgen.py`` runs a closed loop, this opens ``count`` connections, sends one streaming
request on each and reads it to the end, so that (with a slow upstream) all of them are open at the
same time. Every request carries its own ``User-Agent`` (``<prefix><index>``), so the caller can find
each one in the relay's request log afterwards. Like ``loadgen.py`` it is plain ``asyncio.Protocol``
on uvloop, parses only the status line and the HTTP/1.1 framing, and keeps a few hundred bytes of
state per stream: 10,000 streams cost a few tens of MB and a fraction of a core.

Opening is paced: at most ``opening`` (100) requests wait for their response headers at any moment.
A burst of 10,000 SYNs would overflow a listen backlog (the mock's aiohttp listens with 128, and the
relay connects to it once per stream) and cost a second per SYN retransmission instead.
Progress goes to stderr every 2 s; the result (``--json``) has the counts, the time until every
stream had its headers, the most streams open at once, TTFB and duration percentiles, the errors,
and the indexes of the streams that completed.

    python bench/streamgen.py http://127.0.0.1:8080/claude/v1/messages -n 10000 \\
        -H 'x-api-key: sk-...' --body-file body.json [--opening 100] [--end-marker message_stop] --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from collections import Counter
from typing import Any

from loadgen import LoadSpec, _percentiles, new_loop

_now = time.perf_counter_ns


class _Stream(asyncio.Protocol):
    """One connection, one streaming request, read until the end of its body."""

    __slots__ = (
        "body_start",
        "buf",
        "chunked",
        "gen",
        "index",
        "length",
        "pos",
        "received",
        "status",
        "t_done",
        "t_first",
        "t_headers",
        "t_sent",
        "tail",
        "transport",
    )

    def __init__(self, gen: _Streams, index: int) -> None:
        self.gen = gen
        self.index = index
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()  # the head, then the unparsed rest of the body's chunk framing
        self.body_start = -1
        self.chunked = False
        self.length = 0
        self.pos = 0
        self.received = 0  # body bytes (content-length answers)
        self.status = 0
        self.t_sent = self.t_headers = self.t_first = self.t_done = 0
        self.tail = b""  # the last bytes of the body: does it end with the stream's last event?

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.t_sent = _now()
        self.gen.sent += 1
        self.transport.write(self.gen.request(self.index))

    def data_received(self, data: bytes) -> None:
        now = _now()
        try:
            if self.body_start < 0:
                self.buf += data
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                self.t_headers = now
                self._parse_head(end)
                data = bytes(self.buf[end + 4 :])
                self.buf.clear()
                self.gen.headers_received(self)
            if data:
                if not self.t_first:
                    self.t_first = now
                self.tail = (self.tail + data)[-256:]
                finished = self._chunks_done(data) if self.chunked else self._length_done(len(data))
            else:
                finished = not self.chunked and self.length == 0
        except ValueError:
            self.gen.finish(self, now, "protocol error")
            return
        if finished:
            self.gen.finish(self, now, None)

    def _parse_head(self, end: int) -> None:
        head = bytes(self.buf[:end]).lower()
        self.status = int(head[9:12])
        self.body_start = end + 4
        at = head.find(b"\r\ncontent-length:")
        if at >= 0:
            stop = head.find(b"\r\n", at + 17)
            self.length = int(head[at + 17 : stop if stop >= 0 else None])
            return
        at = head.find(b"\r\ntransfer-encoding:")
        if at >= 0:
            stop = head.find(b"\r\n", at + 2)
            self.chunked = b"chunked" in head[at : stop if stop >= 0 else None]

    def _length_done(self, size: int) -> bool:
        self.received += size
        return self.received >= self.length

    def _chunks_done(self, data: bytes) -> bool:
        """Walk the chunk framing; only the not yet complete part is kept."""
        buf = self.buf
        buf += data
        pos = 0
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                break
            size = int(bytes(buf[pos:eol]).split(b";", 1)[0], 16)
            if size == 0:
                if len(buf) >= eol + 4:
                    return True
                break
            nxt = eol + 2 + size + 2
            if len(buf) < nxt:
                break
            pos = nxt
        del buf[:pos]
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.t_done:
            reason = f"connection lost: {exc}" if exc else "connection closed before the end"
            self.gen.finish(self, _now(), reason)


class _Streams:
    def __init__(self, spec: LoadSpec, count: int, opening: int, ua_prefix: str, end_marker: bytes) -> None:
        self.spec = spec
        head, _, self.body = spec.request.partition(b"\r\n\r\n")
        self.head = head + b"\r\nUser-Agent: " + ua_prefix.encode()
        self.count = count
        self.end_marker = end_marker
        self.gate = asyncio.Semaphore(opening)
        self.open = 0  # headers received, not finished
        self.peak_open = 0
        self.opened = 0
        self.sent = 0  # requests written (a connection that failed to open sent nothing)
        self.completed: list[int] = []
        self.errors: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.ttfb: list[int] = []
        self.duration: list[int] = []
        self.last_headers = 0
        self.finished = 0
        self.all_done: asyncio.Future[None] | None = None
        self.waiting: dict[int, asyncio.Future[None]] = {}  # index -> released when headers arrive

    def request(self, index: int) -> bytes:
        return self.head + str(index).encode() + b"\r\n\r\n" + self.body

    def headers_received(self, stream: _Stream) -> None:
        self.statuses[stream.status] += 1
        if 200 <= stream.status < 300:
            self.opened += 1
            self.open += 1
            self.peak_open = max(self.peak_open, self.open)
            self.last_headers = stream.t_headers
        self._release(stream.index)

    def _release(self, index: int) -> None:
        waiter = self.waiting.pop(index, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def finish(self, stream: _Stream, now: int, error: str | None) -> None:
        if stream.t_done:
            return
        stream.t_done = now
        if stream.t_headers and 200 <= stream.status < 300:
            self.open -= 1
        if error is None and not 200 <= stream.status < 300:
            error = f"HTTP {stream.status}"
        if error is None and self.end_marker and self.end_marker not in stream.tail:
            error = "stream ended without its last event"
        if error is None:
            self.completed.append(stream.index)
            self.ttfb.append(stream.t_first - stream.t_sent)
            self.duration.append(now - stream.t_sent)
        else:
            self.errors[error] += 1
        if stream.transport is not None:
            stream.transport.close()
        self._release(stream.index)
        self.finished += 1
        if self.finished >= self.count and self.all_done is not None and not self.all_done.done():
            self.all_done.set_result(None)

    async def start_one(self, index: int) -> None:
        loop = asyncio.get_running_loop()
        await self.gate.acquire()
        waiter = loop.create_future()
        self.waiting[index] = waiter
        try:
            stream = _Stream(self, index)
            try:
                await loop.create_connection(lambda: stream, self.spec.host, self.spec.port)
            except OSError as exc:
                stream.t_sent = _now()
                self.finish(stream, _now(), f"connect failed: {exc.strerror or exc}")
                return
            await waiter
        finally:
            self.waiting.pop(index, None)
            self.gate.release()


async def run_async(
    spec: LoadSpec,
    count: int,
    *,
    opening: int = 100,
    ua_prefix: str = "aiproxy-bench-stream/",
    end_marker: bytes = b"",
    give_up_s: float = 600.0,
) -> dict[str, Any]:
    gen = _Streams(spec, count, opening, ua_prefix, end_marker)
    loop = asyncio.get_running_loop()
    gen.all_done = loop.create_future()
    started = _now()
    progress = loop.create_task(_progress(gen, started))
    openers = [loop.create_task(gen.start_one(i)) for i in range(count)]
    timed_out = False
    try:
        await asyncio.wait_for(asyncio.shield(gen.all_done), give_up_s)
    except TimeoutError:
        timed_out = True
    progress.cancel()
    for task in openers:
        task.cancel()
    unfinished = count - gen.finished
    if unfinished:
        gen.errors["unfinished at the timeout"] += unfinished
    elapsed = (_now() - started) / 1e9
    return {
        "streams": count,
        "sent": gen.sent,
        "opened": gen.opened,
        "completed": len(gen.completed),
        "errored": sum(gen.errors.values()),
        "errors": dict(gen.errors),
        "status": {str(k): v for k, v in sorted(gen.statuses.items())},
        "time_to_open_all_s": (gen.last_headers - started) / 1e9 if gen.opened == count else None,
        "time_to_last_open_s": (gen.last_headers - started) / 1e9 if gen.opened else None,
        "peak_open": gen.peak_open,
        "elapsed_s": elapsed,
        "timed_out": timed_out,
        "ttfb_ms": _percentiles(gen.ttfb),
        "duration_ms": _percentiles(gen.duration),
        "completed_indexes": sorted(gen.completed),
        "ua_prefix": ua_prefix,
        "cpu_s": time.process_time(),
    }


async def _progress(gen: _Streams, started: int) -> None:
    while True:
        await asyncio.sleep(2.0)
        print(
            f"    {(_now() - started) / 1e9:5.1f}s: {gen.opened} opened, {gen.open} open now, "
            f"{len(gen.completed)} completed, {sum(gen.errors.values())} errors",
            file=sys.stderr,
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("url", help="http://host:port/path")
    p.add_argument("-n", "--streams", type=int, required=True, help="streams to hold open at once")
    p.add_argument("-H", "--header", action="append", default=[], help="'Name: value' (repeatable)")
    p.add_argument("--body-file", required=True, help="the request body (a streaming request)")
    p.add_argument("--opening", type=int, default=100, help="at most this many awaiting headers (100)")
    p.add_argument("--ua-prefix", default="aiproxy-bench-stream/", help="User-Agent = prefix + index")
    p.add_argument("--end-marker", default="", help="a stream must end with bytes containing this")
    p.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    args = p.parse_args(argv)
    # Each stream is a socket: take what the hard limit allows (the caller may have raised it).
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    headers = {}
    for item in args.header:
        name, _, value = item.partition(":")
        headers[name.strip()] = value.strip()
    with open(args.body_file, "rb") as fh:
        body = fh.read()
    spec = LoadSpec.for_url(args.url, body=body, headers=headers)
    spec.request = _without_user_agent(spec.request)  # every stream gets its own
    with asyncio.Runner(loop_factory=new_loop) as runner:
        result = runner.run(
            run_async(
                spec,
                args.streams,
                opening=args.opening,
                ua_prefix=args.ua_prefix,
                end_marker=args.end_marker.encode(),
                give_up_s=args.timeout,
            )
        )
    if args.json:
        json.dump(result, sys.stdout)
        sys.stdout.write("\n")
    else:
        shown = {k: v for k, v in result.items() if k != "completed_indexes"}
        print(json.dumps(shown, indent=2))
    return 0


def _without_user_agent(request: bytes) -> bytes:
    """The request without a User-Agent header (``LoadSpec`` adds one unless given one)."""
    head, _, body = request.partition(b"\r\n\r\n")
    lines = [ln for ln in head.split(b"\r\n") if not ln.lower().startswith(b"user-agent:")]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


if __name__ == "__main__":
    raise SystemExit(main())
