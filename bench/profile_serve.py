"""Run ``aiproxy serve`` with a statistical CPU profiler and an event-loop stall monitor.

A bench-only diagnostic (nothing in ``src/`` changes): ``ITIMER_PROF`` fires every ``--interval`` of
CPU time consumed by the process and the handler records the Python stack that was running in the
main thread (for a coroutine that is the whole ``await`` chain, so inclusive shares are right, which
cProfile gets wrong across greenlet and coroutine switches). A small task started next to the
gateway measures how late a 2 ms timer fires: a late timer means the event loop was blocked by
synchronous work; the cyclic garbage collector's pauses are timed too. Sampling runs between
SIGUSR1 (start, counters reset) and SIGUSR2 (stop), so start-up (imports, migrations) stays out of
the figures. Everything is written as JSON (plus folded
stacks for flame graphs) when the server exits.

    python bench/profile_serve.py --out prof.json [--interval 0.001] -- serve --port 8080
    kill -USR1 <pid>; <load>; kill -USR2 <pid>; kill -INT <pid>

For "what if" measurements it can also switch parts of the per-request accounting off in this
process only (``--disable recorder,sticky``): ``recorder`` drops usage events instead of writing
them, ``sticky`` skips binding (or renewing) the conversation's account after each request (the
relay only does that when a request has more than one candidate account). These relays do
NOT do full accounting; they exist to put a price on each part. ``--gc-freeze`` (full accounting
kept) calls ``gc.freeze()`` once the gateway has started, so full collections skip start-up objects;
``--gc-threshold A,B,C`` sets the collector's thresholds then, in place of the relay's own.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

Key = tuple[str, int, str]
NO_FRAME: Key = ("<no Python frame: event loop C code or another thread>", 0, "")


class Sampler:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.samples = 0
        self.leaf: Counter[Key] = Counter()
        self.inclusive: Counter[Key] = Counter()
        self.stacks: Counter[tuple[Key, ...]] = Counter()

    def handler(self, _signum: int, frame: FrameType | None) -> None:
        self.samples += 1
        if frame is None:
            self.leaf[NO_FRAME] += 1
            self.inclusive[NO_FRAME] += 1
            self.stacks[(NO_FRAME,)] += 1
            return
        stack: list[Key] = []
        seen: set[Key] = set()
        f: FrameType | None = frame
        while f is not None:
            code = f.f_code
            key = (code.co_filename, code.co_firstlineno, code.co_name)
            stack.append(key)
            if key not in seen:
                seen.add(key)
                self.inclusive[key] += 1
            f = f.f_back
        self.leaf[stack[0]] += 1
        self.stacks[tuple(reversed(stack))] += 1


class StallMonitor:
    """How late a periodic timer fires: the event loop's blocking time, as a histogram."""

    BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100)

    def __init__(self, period: float = 0.002) -> None:
        self.period = period
        self.reset()

    def reset(self) -> None:
        self.ticks = 0
        self.late_total = 0.0
        self.max_ms = 0.0
        self.over = dict.fromkeys(self.BUCKETS_MS, 0)

    async def run(self) -> None:
        period = self.period
        clock = time.perf_counter
        while True:
            start = clock()
            await asyncio.sleep(period)
            late = (clock() - start - period) * 1000
            self.ticks += 1
            if late > 0:
                self.late_total += late
                self.max_ms = max(self.max_ms, late)
                for bucket in self.BUCKETS_MS:
                    if late >= bucket:
                        self.over[bucket] += 1


class GcTimer:
    """Pauses of the cyclic garbage collector, per generation (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.reset()
        self._started = 0.0

    def reset(self) -> None:
        self.count = [0, 0, 0]
        self.total_ms = [0.0, 0.0, 0.0]
        self.max_ms = [0.0, 0.0, 0.0]

    def callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        gen = info.get("generation", 2)
        ms = (time.perf_counter() - self._started) * 1000
        self.count[gen] += 1
        self.total_ms[gen] += ms
        self.max_ms[gen] = max(self.max_ms[gen], ms)


class FlushTimer:
    """Counts the recorder's flushes and the events they wrote."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.flushes = 0
        self.events = 0
        self.wall_s = 0.0


def _short(filename: str) -> str:
    if "/aiproxy-bench-code-" in filename:  # run.py's snapshot of src/
        return "aiproxy/" + filename.split("/aiproxy/", 1)[1]
    for marker in ("/site-packages/", "/src/", "/lib/python3.11/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def _name(key: Key) -> str:
    filename, line, func = key
    return f"{_short(filename)}:{line}({func})" if line else filename


class Window:
    """The sampled window: opened by SIGUSR1, closed by SIGUSR2."""

    def __init__(self, interval: float, parts: tuple[Sampler, StallMonitor, FlushTimer, GcTimer]) -> None:
        self.interval = interval
        self.parts = parts
        self.cpu_s = 0.0
        self.wall_s = 0.0
        self._cpu0 = self._wall0 = 0.0
        self.open = False

    def begin(self, *_: Any) -> None:
        for part in self.parts:
            part.reset()
        self._cpu0, self._wall0 = time.process_time(), time.perf_counter()
        self.open = True
        signal.setitimer(signal.ITIMER_PROF, self.interval, self.interval)

    def end(self, *_: Any) -> None:
        if self.open:
            signal.setitimer(signal.ITIMER_PROF, 0, 0)
            self.cpu_s = time.process_time() - self._cpu0
            self.wall_s = time.perf_counter() - self._wall0
            self.open = False


DISABLE_CHOICES = ("recorder", "database", "sticky")


def disable(parts: list[str]) -> None:
    """Switch parts of the accounting off in this process (what-if measurements only)."""
    from aiproxy.billing.recorder import UsageRecorder
    from aiproxy.gateway.relay import Relay

    if "recorder" in parts:

        def record(self: UsageRecorder, event: Any) -> None:
            return None

        UsageRecorder.record = record  # type: ignore[method-assign]
    if "database" in parts:  # journaled as always, never written to the database

        def journal_only(self: UsageRecorder, event: Any) -> None:
            if self._journal is not None:
                self._journal.append(event)

        UsageRecorder.record = journal_only  # type: ignore[method-assign]
    if "sticky" in parts:

        async def remember(self: Relay, call: Any, account_id: int) -> None:
            return None

        Relay._remember = remember  # type: ignore[method-assign]


def install(
    interval: float, *, monitor_stalls: bool, gc_freeze: bool, gc_threshold: tuple[int, ...] | None = None
) -> tuple[Sampler, StallMonitor, FlushTimer, GcTimer, Window]:
    sampler = Sampler()
    monitor = StallMonitor()
    flushes = FlushTimer()
    gc_timer = GcTimer()
    window = Window(interval, (sampler, monitor, flushes, gc_timer))
    gc.callbacks.append(gc_timer.callback)

    from aiproxy.billing.recorder import UsageRecorder
    from aiproxy.gateway.pipeline import Gateway

    original_start = Gateway.start
    original_flush = UsageRecorder.flush

    async def start(self: Gateway) -> None:
        await original_start(self)
        if gc_freeze:  # what-if: start-up objects move to the permanent generation
            gc.collect()
            gc.freeze()
        if gc_threshold is not None:  # what-if: the collector's thresholds instead of the relay's own
            gc.set_threshold(*gc_threshold)
        if monitor_stalls:
            self._bench_stall_task = asyncio.get_running_loop().create_task(monitor.run())  # type: ignore[attr-defined]

    async def flush(self: UsageRecorder) -> bool:
        before, started = self.written, time.perf_counter()
        ok = await original_flush(self)
        if self.written > before and window.open:
            flushes.flushes += 1
            flushes.events += self.written - before
            flushes.wall_s += time.perf_counter() - started
        return ok

    Gateway.start = start  # type: ignore[method-assign]
    UsageRecorder.flush = flush  # type: ignore[method-assign]
    signal.signal(signal.SIGPROF, sampler.handler)
    signal.signal(signal.SIGUSR1, window.begin)
    signal.signal(signal.SIGUSR2, window.end)
    return sampler, monitor, flushes, gc_timer, window


def report(
    sampler: Sampler, monitor: StallMonitor, flushes: FlushTimer, gc_timer: GcTimer, window: Window
) -> dict[str, Any]:
    total = sampler.samples or 1

    def rows(counter: Counter[Key], n: int) -> list[dict[str, Any]]:
        return [{"function": _name(k), "samples": v, "share": v / total} for k, v in counter.most_common(n)]

    by_file: Counter[str] = Counter()
    for key, count in sampler.leaf.items():
        by_file[key[0]] += count
    return {
        "interval_s": window.interval,
        "samples": sampler.samples,
        "window_cpu_s": window.cpu_s,
        "window_wall_s": window.wall_s,
        "self_by_file": dict(by_file.most_common()),
        "top_self": rows(sampler.leaf, 40),
        "top_inclusive": rows(sampler.inclusive, 80),
        "stalls": {
            "timer_period_ms": monitor.period * 1000,
            "ticks": monitor.ticks,
            "late_total_ms": monitor.late_total,
            "max_ms": monitor.max_ms,
            "ticks_late_over_ms": {str(k): v for k, v in monitor.over.items()},
        },
        "gc": {
            "collections": gc_timer.count,
            "total_ms": gc_timer.total_ms,
            "max_ms": gc_timer.max_ms,
            "tracked_objects": len(gc.get_objects()),  # at exit, after the load
            "frozen_objects": gc.get_freeze_count(),
            "threshold": gc.get_threshold(),
        },
        "recorder": {
            "flushes": flushes.flushes,
            "events": flushes.events,
            "wall_ms_per_flush": flushes.wall_s / flushes.flushes * 1000 if flushes.flushes else None,
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON report written on exit")
    parser.add_argument("--interval", type=float, default=0.001, help="CPU seconds between samples")
    parser.add_argument("--disable", default="", help=f"comma list of {', '.join(DISABLE_CHOICES)}")
    parser.add_argument("--gc-freeze", action="store_true", help="gc.freeze() once the gateway started")
    parser.add_argument("--gc-threshold", help="A,B,C for gc.set_threshold once the gateway started")
    parser.add_argument("--no-stall-monitor", action="store_true", help="no 2 ms timer task")
    parser.add_argument("aiproxy_args", nargs=argparse.REMAINDER, help="-- then the aiproxy command")
    args = parser.parse_args()
    argv = [a for a in args.aiproxy_args if a != "--"] or ["serve"]

    from aiproxy.cli import main as aiproxy_main

    parts = [p.strip() for p in args.disable.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(DISABLE_CHOICES))
    if unknown:
        parser.error(f"--disable: unknown part(s) {unknown}")
    disable(parts)
    threshold = tuple(int(part) for part in args.gc_threshold.split(",")) if args.gc_threshold else None
    sampler, monitor, flushes, gc_timer, window = install(
        args.interval,
        monitor_stalls=not args.no_stall_monitor,
        gc_freeze=args.gc_freeze,
        gc_threshold=threshold,
    )
    try:
        code = aiproxy_main(argv)
    finally:
        window.end()
        data = report(sampler, monitor, flushes, gc_timer, window)
        args.out.write_text(json.dumps(data, indent=1))
        folded = args.out.with_suffix(".folded")
        with open(folded, "w") as fh:
            for stack, count in sampler.stacks.most_common():
                fh.write(";".join(_name(k).replace(";", ",") for k in stack) + f" {count}\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
