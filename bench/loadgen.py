"""A cheap closed-loop HTTP/1.1 load generator for benchmarks on small boxes.

Each of ``concurrency`` keep-alive connections sends one pre-built request, waits for the whole
response, records it and sends the next one at once (closed loop, like ``wrk``). Only the status
line, ``content-length`` and ``chunked`` framing are parsed, nothing is decoded, and the loop is
uvloop: the generator costs roughly 15-30 µs of CPU per request, so it can share a core with the
server it measures.

Recorded per measured request: latency (request written → last body byte), time to the response
headers and time to the first body byte (TTFB; for a stream, the first chunk of events).

``rate`` (``--rate``) paces the same connections to a total request rate instead (a soak at
moderate load); ``watch`` (``--watch NAME=PID[,PID...]``) reports the CPU time of other processes
over the measured window, summed over several processes under one name (a relay's workers).

Library use::

    spec = LoadSpec.for_url("http://127.0.0.1:8080/v1/messages", body=b"{...}", headers={...})
    result = run(spec, concurrency=16, duration=10, warmup=1)

CLI (``--json`` prints the result as one JSON document on stdout)::

    python bench/loadgen.py http://127.0.0.1:8080/claude/v1/messages -c 16 -d 10 \
        -H 'x-api-key: sk-...' --body '{"model": "...", ...}' [--watch relay=PID[,PID...]] \
        [--rate R] [--cpu 1] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency of the project
    uvloop = None  # type: ignore[assignment]

try:
    import psutil
except ImportError:  # pragma: no cover - psutil is a dependency of the project
    psutil = None  # type: ignore[assignment]

_now = time.perf_counter_ns


@dataclass(slots=True)
class LoadSpec:
    """Where to connect and the exact bytes of the request sent on every iteration."""

    host: str
    port: int
    request: bytes

    @classmethod
    def for_url(
        cls,
        url: str,
        *,
        method: str = "POST",
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> LoadSpec:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"only plain http:// URLs are supported, got {url!r}")
        port = parts.port or 80
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [f"{method} {target} HTTP/1.1", f"Host: {parts.hostname}:{port}"]
        given = {k.lower() for k in (headers or {})}
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
            if "content-type" not in given:
                lines.append("Content-Type: application/json")
        if "user-agent" not in given:
            lines.append("User-Agent: aiproxy-bench-loadgen")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return cls(parts.hostname, port, head + body)


@dataclass(slots=True)
class Stats:
    """Samples of the measured window (nanoseconds) and counters of the whole run."""

    latency: list[int] = field(default_factory=list)
    headers: list[int] = field(default_factory=list)
    first_byte: list[int] = field(default_factory=list)
    status: dict[int, int] = field(default_factory=dict)
    sent: int = 0  # every request written, warmup included (for accounting checks)
    completed: int = 0  # every complete response, warmup included
    connection_errors: int = 0
    protocol_errors: int = 0


class _Conn(asyncio.Protocol):
    """One keep-alive connection running the closed loop."""

    __slots__ = (
        "body_start",
        "buf",
        "chunked",
        "gen",
        "length",
        "pos",
        "status",
        "t_first",
        "t_headers",
        "t_sent",
        "transport",
        "waiting",
    )

    def __init__(self, gen: _Generator) -> None:
        self.gen = gen
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiting = False
        self.body_start = -1
        self.chunked = False
        self.length = 0
        self.pos = 0
        self.status = 0
        self.t_sent = 0
        self.t_headers = 0
        self.t_first = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.gen.conns.add(self)
        self.send()

    def send(self) -> None:
        self.buf.clear()
        self.body_start = -1
        self.t_first = 0
        self.waiting = True
        self.gen.stats.sent += 1
        self.t_sent = _now()
        assert self.transport is not None
        self.transport.write(self.gen.request)

    def data_received(self, data: bytes) -> None:
        now = _now()
        buf = self.buf
        buf += data
        try:
            if self.body_start < 0:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                self.t_headers = now
                self._parse_head(end)
            if self.t_first == 0 and len(buf) > self.body_start:
                self.t_first = now
            if self.chunked:
                if not self._chunked_done():
                    return
            elif len(buf) - self.body_start < self.length:
                return
        except ValueError:  # not HTTP/1.1 framing we understand: drop the connection, open another
            self.gen.stats.protocol_errors += 1
            assert self.transport is not None
            self.transport.abort()
            return
        self.waiting = False
        self.gen.done(self, now)

    def _parse_head(self, end: int) -> None:
        buf = self.buf
        self.status = int(buf[9:12])
        head = bytes(buf[:end]).lower()
        self.body_start = self.pos = end + 4
        at = head.find(b"\r\ncontent-length:")
        if at >= 0:
            stop = head.find(b"\r\n", at + 17)
            self.length = int(head[at + 17 : stop if stop >= 0 else None])
            self.chunked = False
            return
        at = head.find(b"\r\ntransfer-encoding:")
        if at >= 0:
            stop = head.find(b"\r\n", at + 2)
            self.chunked = b"chunked" in head[at : stop if stop >= 0 else None]
        else:
            self.chunked = False
        self.length = 0  # neither: a body-less answer (204/304) in this generator's world

    def _chunked_done(self) -> bool:
        buf = self.buf
        pos = self.pos
        size_buf = len(buf)
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                break
            size = int(bytes(buf[pos:eol]).split(b";", 1)[0], 16)
            if size == 0:
                if size_buf >= eol + 4:  # the final CRLF (no trailers are expected)
                    return True
                break
            nxt = eol + 2 + size + 2
            if size_buf < nxt:
                break
            pos = nxt
        self.pos = pos
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.gen.conns.discard(self)
        self.gen.lost(self)


class _Generator:
    def __init__(self, spec: LoadSpec, concurrency: int, rate: float = 0.0) -> None:
        self.spec = spec
        self.interval_ns = int(1e9 / rate) if rate > 0 else 0  # 0: closed loop, no pacing
        self.next_slot = 0
        self.request = spec.request
        self.concurrency = concurrency
        self.stats = Stats()
        self.recording = False
        self.stopping = False
        self.open = 0
        self.conns: set[_Conn] = set()
        self.finished: asyncio.Future[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def done(self, conn: _Conn, now: int) -> None:
        stats = self.stats
        stats.completed += 1
        if self.recording:
            sent = conn.t_sent
            stats.latency.append(now - sent)
            stats.headers.append(conn.t_headers - sent)
            stats.first_byte.append((conn.t_first or now) - sent)
            status = conn.status
            stats.status[status] = stats.status.get(status, 0) + 1
        if self.stopping:
            assert conn.transport is not None
            conn.transport.close()
        elif self.interval_ns:
            self._paced_send(conn, now)
        else:
            conn.send()

    def _paced_send(self, conn: _Conn, now: int) -> None:
        """With a rate: the next request goes out at the generator's next free slot (open-loop
        pacing over closed-loop connections; a slow answer still delays its connection)."""
        at = max(now, self.next_slot)
        self.next_slot = at + self.interval_ns
        if at <= now:
            conn.send()
            return
        assert self.loop is not None
        self.loop.call_later((at - now) / 1e9, self._send_later, conn)

    def _send_later(self, conn: _Conn) -> None:
        if conn.transport is None:  # lost meanwhile: lost() has already replaced it
            return
        if self.stopping:
            conn.transport.close()
        else:
            conn.send()

    def lost(self, conn: _Conn) -> None:
        if conn.waiting:  # the server dropped the connection mid-request
            self.stats.connection_errors += 1
            conn.waiting = False
        if self.stopping:
            self.open -= 1
            if self.open == 0 and self.finished is not None and not self.finished.done():
                self.finished.set_result(None)
            return
        assert self.loop is not None
        self.open -= 1
        self.loop.create_task(self.connect())  # keep the concurrency level

    async def connect(self) -> None:
        assert self.loop is not None
        self.open += 1
        try:
            await self.loop.create_connection(lambda: _Conn(self), self.spec.host, self.spec.port)
        except OSError:
            self.open -= 1
            self.stats.connection_errors += 1
            if not self.stopping:
                await asyncio.sleep(0.05)
                self.loop.create_task(self.connect())
            elif self.open == 0 and self.finished is not None and not self.finished.done():
                self.finished.set_result(None)


class CpuWatch:
    """CPU seconds used by some processes (and the whole box) between two samples.

    A name may stand for several processes (a relay master and its workers): its figure is their
    sum, and ``parts`` keeps each process's share.
    """

    def __init__(self, pids: dict[str, int | list[int]]) -> None:
        self.procs: dict[str, list[Any]] = {}
        if psutil is not None:
            for name, given in pids.items():
                for pid in [given] if isinstance(given, int) else given:
                    with contextlib.suppress(psutil.Error):
                        self.procs.setdefault(name, []).append(psutil.Process(pid))
        self.start: dict[str, float] = {}
        self.start_parts: dict[int, float] = {}
        self.parts: dict[str, dict[str, float]] = {}
        self.system_start: Any = None
        self.self_start = 0.0

    def _sample(self, parts: dict[int, float]) -> dict[str, float]:
        out = {}
        for name, procs in self.procs.items():
            for proc in procs:
                with contextlib.suppress(psutil.Error):
                    t = proc.cpu_times()
                    parts[proc.pid] = t.user + t.system
                    out[name] = out.get(name, 0.0) + parts[proc.pid]
        return out

    def begin(self) -> None:
        self.self_start = time.process_time()
        self.start = self._sample(self.start_parts)
        self.system_start = psutil.cpu_times() if psutil is not None else None

    def end(self) -> dict[str, Any]:
        used = time.process_time() - self.self_start
        now_parts: dict[int, float] = {}
        now = self._sample(now_parts)
        result: dict[str, Any] = {"loadgen": used}
        for name, value in now.items():
            if name in self.start:
                result[name] = value - self.start[name]
        for name, procs in self.procs.items():
            if len(procs) > 1:
                self.parts[name] = {
                    str(p.pid): now_parts[p.pid] - self.start_parts[p.pid]
                    for p in procs
                    if p.pid in now_parts and p.pid in self.start_parts
                }
        if self.system_start is not None:
            a, b = self.system_start, psutil.cpu_times()
            total = sum(b) - sum(a)
            result["box_busy_fraction"] = (_busy(b) - _busy(a)) / total if total > 0 else 0.0
        return result


def _busy(t: Any) -> float:
    """Non-idle CPU seconds of a ``psutil.cpu_times()`` sample (iowait counts as idle)."""
    return t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0)


def _percentiles(samples_ns: list[int]) -> dict[str, float] | None:
    if not samples_ns:
        return None
    s = sorted(samples_ns)
    n = len(s)

    def pick(q: float) -> float:
        return s[min(n - 1, int(q * n))] / 1e6

    return {
        "p50": pick(0.50),
        "p90": pick(0.90),
        "p99": pick(0.99),
        "p999": pick(0.999),
        "max": s[-1] / 1e6,
        "mean": sum(s) / n / 1e6,
    }


async def run_async(
    spec: LoadSpec,
    *,
    concurrency: int,
    duration: float,
    warmup: float = 1.0,
    watch: dict[str, int | list[int]] | None = None,
    drain_timeout: float = 30.0,
    rate: float = 0.0,
) -> dict[str, Any]:
    """Run the closed loop: ``warmup`` seconds unrecorded, then ``duration`` seconds measured.
    ``rate`` > 0 paces the connections to that many requests per second in all."""
    gen = _Generator(spec, concurrency, rate)
    loop = asyncio.get_running_loop()
    gen.loop = loop
    gen.finished = loop.create_future()
    cpu = CpuWatch(watch or {})
    await asyncio.gather(*(gen.connect() for _ in range(concurrency)))
    if warmup > 0:
        await asyncio.sleep(warmup)
    cpu.begin()
    started = _now()
    completed_before = gen.stats.completed
    gen.recording = True
    await asyncio.sleep(duration)
    gen.recording = False
    elapsed = (_now() - started) / 1e9
    cpu_used = cpu.end()
    gen.stopping = True
    measured = gen.stats.completed - completed_before
    try:
        await asyncio.wait_for(asyncio.shield(gen.finished), drain_timeout)
    except TimeoutError:  # a server that never answers: give up on what is still in flight
        for conn in list(gen.conns):
            if conn.transport is not None:
                conn.transport.abort()
    stats = gen.stats
    per_request = {
        f"{name}_us_per_req": (value / measured * 1e6 if measured else None)
        for name, value in cpu_used.items()
        if name != "box_busy_fraction"
    }
    return {
        "host": spec.host,
        "port": spec.port,
        "concurrency": concurrency,
        "duration_s": elapsed,
        "warmup_s": warmup,
        "requests": measured,
        "rps": measured / elapsed if elapsed > 0 else 0.0,
        "latency_ms": _percentiles(stats.latency),
        "headers_ms": _percentiles(stats.headers),
        "ttfb_ms": _percentiles(stats.first_byte),
        "status": {str(k): v for k, v in sorted(stats.status.items())},
        "non_2xx": sum(v for k, v in stats.status.items() if not 200 <= k < 300),
        "connection_errors": stats.connection_errors,
        "protocol_errors": stats.protocol_errors,
        "sent_total": stats.sent,
        "completed_total": stats.completed,
        "unfinished": stats.sent - stats.completed,
        "cpu_s": cpu_used,
        "cpu": per_request,
        **({"cpu_s_parts": cpu.parts} if cpu.parts else {}),
        **({"rate_limit": rate} if rate > 0 else {}),
    }


def new_loop() -> asyncio.AbstractEventLoop:
    return uvloop.new_event_loop() if uvloop is not None else asyncio.new_event_loop()


def run(spec: LoadSpec, **kwargs: Any) -> dict[str, Any]:
    """Blocking wrapper of :func:`run_async` on a fresh uvloop loop."""
    with asyncio.Runner(loop_factory=new_loop) as runner:
        return runner.run(run_async(spec, **kwargs))


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("url", help="http://host:port/path")
    p.add_argument("-c", "--concurrency", type=int, default=1, help="connections (default 1)")
    p.add_argument("-d", "--duration", type=float, default=10.0, help="measured seconds (default 10)")
    p.add_argument("-w", "--warmup", type=float, default=1.0, help="unrecorded seconds first (default 1)")
    p.add_argument("-X", "--method", default="POST")
    p.add_argument("-H", "--header", action="append", default=[], help="'Name: value' (repeatable)")
    p.add_argument("--body", default="", help="request body (text)")
    p.add_argument("--body-file", help="read the request body from this file")
    p.add_argument(
        "--watch",
        action="append",
        default=[],
        help="NAME=PID[,PID...]: report its CPU time too (summed over several processes)",
    )
    p.add_argument("--rate", type=float, default=0.0, help="pace to this many req/s in all (default: off)")
    p.add_argument("--cpu", type=int, help="pin this process to that CPU core")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    headers: dict[str, str] = {}
    for item in args.header:
        name, _, value = item.partition(":")
        headers[name.strip()] = value.strip()
    if args.body_file:
        with open(args.body_file, "rb") as fh:
            body = fh.read()
    else:
        body = args.body.encode()
    watch: dict[str, int | list[int]] = {}
    for item in args.watch:
        name, _, pids = item.partition("=")
        parts = [int(pid) for pid in pids.split(",") if pid]
        watch[name] = parts[0] if len(parts) == 1 else parts
    spec = LoadSpec.for_url(args.url, method=args.method.upper(), body=body, headers=headers)
    result = run(
        spec,
        concurrency=args.concurrency,
        duration=args.duration,
        warmup=args.warmup,
        watch=watch,
        rate=args.rate,
    )
    if args.json:
        json.dump(result, sys.stdout)
        sys.stdout.write("\n")
        return 0
    lat, ttfb = result["latency_ms"] or {}, result["ttfb_ms"] or {}
    print(f"{result['requests']} requests in {result['duration_s']:.2f}s: {result['rps']:.0f} req/s")
    if lat:
        print(
            f"latency ms  p50 {lat['p50']:.3f}  p90 {lat['p90']:.3f}  p99 {lat['p99']:.3f}  "
            f"max {lat['max']:.3f}"
        )
        print(f"ttfb ms     p50 {ttfb['p50']:.3f}  p99 {ttfb['p99']:.3f}")
    print(f"status {result['status']}  connection errors {result['connection_errors']}")
    print("cpu µs/req " + "  ".join(f"{k[:-11]} {v:.1f}" for k, v in result["cpu"].items() if v is not None))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
