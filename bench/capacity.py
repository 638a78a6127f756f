"""Capacity modes: many concurrent streams through one relay worker, and a memory soak.

``--streams N``: the mock answers claude streams slowly (its ``slow`` switch: a delay between SSE
events, set for every ``/v1/messages`` request through ``POST /__mock/behaviour``), so each stream
stays open ``--stream-hold`` seconds; ``streamgen.py`` opens N of them through the relay at once. The
relay's memory (RSS, summed over its processes) and open descriptors are sampled throughout. At the
end every stream must have completed and be in the request log: the log's total and the key's
``request_count`` must equal the requests sent, and each stream (its own ``User-Agent``) must be
there exactly once with status ``success``.

A stream holds two descriptors in the relay (the client's socket and the upstream one), so the run
raises RLIMIT_NOFILE (soft and hard, inherited by every child) to 2N + 4096 when the box's limit is
lower, and the relay's ``AIPROXY_MAX_CONNECTIONS`` (default 10,000; the relay also caps it at the
descriptor limit - 512) to N + 1024.

``--soak MINUTES``: claude messages, claude streams and openai chat at once (c=8 split 3/3/2 by
default, ``--soak-rate`` req/s in all), in rounds of at most 60 s; the relay's RSS is sampled every
``--soak-interval`` seconds. Memory is flat when every sample after the warm-up stays within ±10% of
the first one after it. Every request must be in the request log at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil
from scenarios import Scenario, finish_result, loadgen_argv, request_for, verify_accounting
from stack import (
    MODE_TITLES,
    PYTHON,
    STREAMGEN,
    Layout,
    Stack,
    http_json,
    log,
    mode_stack,
    pin_to,
    process_tree,
    raise_fd_limit,
)

STREAM = Scenario("streams", "claude stream (held open)", "claude", 1, stream=True)
RSS_TOLERANCE = 0.10
RSS_TARGET = 2**30  # the bound for 10,000 streams through one worker
TARGET_STREAMS = 10_000
RELAY_OWN_FDS = 100  # the relay's descriptors besides its streams: database, logs, listener, epoll


class Sampler(threading.Thread):
    """RSS and open descriptors of the relay (all its processes) and the mock's RSS, every
    ``interval`` seconds, plus the relay's CPU time, until ``stop()``."""

    def __init__(self, stack: Stack, interval: float) -> None:
        super().__init__(daemon=True)
        self.stack = stack
        self.interval = interval
        self.samples: list[dict[str, float]] = []
        self._halt = threading.Event()
        self.started = time.monotonic()

    def sample(self) -> dict[str, float]:
        relay = process_tree(self.stack.relay.pid) if self.stack.relay else []
        mock = process_tree(self.stack.mock.pid) if self.stack.mock else []
        out = {"t": time.monotonic() - self.started, "rss": 0.0, "fds": 0.0, "cpu": 0.0, "mock_rss": 0.0}
        for proc in relay:
            with contextlib.suppress(psutil.Error):
                out["rss"] += proc.memory_info().rss
                out["fds"] += proc.num_fds()
                times = proc.cpu_times()
                out["cpu"] += times.user + times.system
        for proc in mock:
            with contextlib.suppress(psutil.Error):
                out["mock_rss"] += proc.memory_info().rss
        return out

    def run(self) -> None:
        while not self._halt.is_set():
            self.samples.append(self.sample())
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(10)

    def peak(self, key: str) -> float:
        return max((s[key] for s in self.samples), default=0.0)


def _capacity_stack(mode: str, layout: Layout, args: argparse.Namespace, code: Path, **overrides: Any) -> Any:
    return mode_stack(mode, layout, args, code, workers=args.workers[0], **overrides)


def _start(stack: Stack) -> None:
    stack.configure()
    stack.start_mock()
    stack.start_relay()
    stack.setup_admin()
    assert stack.mock is not None and stack.relay is not None
    log(
        f"  mock on :{stack.mock_port} (pid {stack.mock.pid}), relay on :{stack.relay_port} "
        f"(pid {stack.relay.pid}, {stack.workers} worker(s))"
    )


def relay_errors(stack: Stack, limit: int = 20) -> list[str]:
    """The first distinct error lines of the relay's console and log files."""
    files = [stack.workdir / "relay.log", *sorted((stack.workdir / "data" / "logs").glob("*.log"))]
    seen: list[str] = []
    for path in files:
        with contextlib.suppress(OSError):
            for line in path.read_text(errors="replace").splitlines():
                if any(word in line for word in ("ERROR", "CRITICAL", "Traceback", "Error:")):
                    text = f"{path.name}: {line.strip()[:300]}"
                    if text not in seen:
                        seen.append(text)
                    if len(seen) >= limit:
                        return seen
    return seen


# -- many concurrent streams -----------------------------------------------------------------------


def stream_frames(stack: Stack) -> int:
    """How many SSE events the mock sends for the bench's claude stream (the slow switch waits after
    each one), read from one direct request."""
    url, headers, body = request_for(stack, STREAM, direct=True)
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return max(1, response.read().count(b"event: "))


def run_streams(mode: str, layout: Layout, args: argparse.Namespace, code: Path) -> dict[str, Any]:
    n = args.streams
    soft, hard = raise_fd_limit(2 * n + 4096)
    log(f"\n== streams, mode {mode}: {MODE_TITLES[mode]} ({layout.describe()}); RLIMIT_NOFILE {soft}/{hard}")
    if soft < 2 * n + RELAY_OWN_FDS:
        # Without CAP_SYS_RESOURCE the hard limit stays: the relay runs out of descriptors first.
        log(
            f"  warning: RLIMIT_NOFILE {soft} is below the ~{2 * n + RELAY_OWN_FDS} descriptors the relay "
            f"needs for {n} streams (2 each + its own); it could not be raised (the hard limit needs "
            "root with CAP_SYS_RESOURCE)"
        )
    env = {"AIPROXY_MAX_CONNECTIONS": str(max(10_000, n + 1024))}
    slots = max(args.user_max_concurrency, 2 * n)
    with _capacity_stack(mode, layout, args, code, extra_env=env, user_max_concurrency=slots) as stack:
        _start(stack)
        frames = stream_frames(stack)
        delay_ms = max(1, round(args.stream_hold * 1000 / frames))
        status, answer = http_json(
            "POST",
            stack.mock_url + "/__mock/behaviour",
            {"mode": "slow", "delay_ms": delay_ms, "path": "/v1/messages"},
        )
        if status != 200:
            raise RuntimeError(f"the mock refused the slow switch: {answer}")
        url, headers, body = request_for(stack, STREAM, direct=False)
        body_file = stack.workdir / "body-streams.json"
        body_file.write_bytes(body)
        argv = [PYTHON, str(STREAMGEN), url, "-n", str(n), "--body-file", str(body_file), "--json"]
        argv += ["--end-marker", "message_stop", "--timeout", str(args.stream_hold * 4 + 300)]
        for name, value in headers.items():
            argv += ["-H", f"{name}: {value}"]
        sampler = Sampler(stack, 0.5)
        start = sampler.sample()
        sampler.start()
        log(f"  {n} claude streams through the relay, {frames} events {delay_ms} ms apart ...")
        done = subprocess.run(
            argv, stdout=subprocess.PIPE, text=True, preexec_fn=pin_to(stack.layout.loadgen), check=False
        )
        sampler.stop()
        if done.returncode != 0:
            raise RuntimeError(f"streamgen failed ({done.returncode}); relay errors: {relay_errors(stack)}")
        gen = json.loads(done.stdout)
        sent = gen["sent"]
        log(f"  waiting for the recorder, then checking the request log against {sent} requests ...")
        accounting = verify_accounting(stack, sent)
        per_stream = check_each_stream(stack, set(gen["completed_indexes"]), gen["ua_prefix"], n)
        end = sampler.sample()
        rss = {"start": start["rss"], "peak": sampler.peak("rss"), "end": end["rss"]}
        ok = gen["completed"] == n and accounting["ok"] and per_stream["ok"]
        result = {
            "mode": mode,
            "title": MODE_TITLES[mode],
            "workers": stack.workers,
            "streams": n,
            "hold_s": args.stream_hold,
            "frames": frames,
            "delay_ms": delay_ms,
            "fd_limit": soft,
            "fd_limit_hard": hard,
            "fd_limit_enough": soft >= 2 * n + RELAY_OWN_FDS,
            "max_connections": int(env["AIPROXY_MAX_CONNECTIONS"]),
            "streamgen": {k: v for k, v in gen.items() if k != "completed_indexes"},
            "relay_rss": rss,
            "relay_fds_peak": int(sampler.peak("fds")),
            "relay_cpu_s": end["cpu"] - start["cpu"],
            "mock_rss_peak": sampler.peak("mock_rss"),
            "samples": [{k: round(v, 2) for k, v in s.items()} for s in sampler.samples[::4]],
            "accounting": accounting,
            "per_stream_log": per_stream,
            "relay_errors": relay_errors(stack),
            "ok": ok,
            # The target is for 10,000 streams: smaller runs are not held to it.
            "target_met": ok and rss["peak"] < RSS_TARGET if n >= TARGET_STREAMS else None,
        }
        log(
            f"  {gen['completed']}/{n} completed, relay RSS peak {rss['peak'] / 2**20:.0f} MiB, "
            f"fds peak {result['relay_fds_peak']}"
        )
        return result


def check_each_stream(stack: Stack, completed: set[int], prefix: str, n: int) -> dict[str, Any]:
    """Page through the request log: each stream (its ``User-Agent``) must be there once, status
    ``success``; the completed ones at least, and nothing that was not sent."""
    seen: dict[int, int] = {}
    not_success: list[int] = []
    page, rows = 1, 0
    while True:
        data = stack.api("GET", f"/api/admin/logs?page={page}&page_size=100")
        for item in data["items"]:
            rows += 1
            agent = item.get("user_agent") or ""
            if not agent.startswith(prefix):
                continue
            index = int(agent[len(prefix) :])
            seen[index] = seen.get(index, 0) + 1
            if item.get("status") != "success":
                not_success.append(index)
        if not data["items"] or rows >= data["total"]:
            break
        page += 1
    missing = sorted(completed - set(seen))
    duplicated = sorted(i for i, count in seen.items() if count > 1)
    unknown = sorted(i for i in seen if not 0 <= i < n)
    found_once = sum(1 for i in completed if seen.get(i) == 1 and i not in not_success)
    return {
        "log_rows_read": rows,
        "streams_logged": len(seen),
        "found_once": found_once,
        "missing": len(missing),
        "duplicated": len(duplicated),
        "not_success": len(not_success),
        "unknown": len(unknown),
        "examples": {"missing": missing[:10], "duplicated": duplicated[:10], "not_success": not_success[:10]},
        "ok": not missing
        and not duplicated
        and not not_success
        and not unknown
        and found_once == len(completed),
    }


# -- the soak --------------------------------------------------------------------------------------


def soak_mix(concurrency: int) -> list[Scenario]:
    """claude messages, claude streams and openai chat, split 3/3/2 (at least one connection each)."""
    claude = max(1, round(concurrency * 3 / 8))
    stream = max(1, round(concurrency * 3 / 8))
    openai = max(1, concurrency - claude - stream)
    return [
        Scenario("soak_claude", "claude messages", "claude", claude),
        Scenario("soak_stream", "claude stream", "claude", stream, stream=True),
        Scenario("soak_openai", "openai chat", "openai", openai),
    ]


def run_soak(mode: str, layout: Layout, args: argparse.Namespace, code: Path) -> dict[str, Any]:
    total_s = args.soak * 60
    warmup_s = args.soak_warmup if args.soak_warmup is not None else min(120.0, total_s * 0.2)
    mix = soak_mix(args.soak_concurrency)
    concurrency = sum(s.concurrency for s in mix)
    log(f"\n== soak, mode {mode}: {MODE_TITLES[mode]} ({layout.describe()}), {args.soak:g} min")
    with _capacity_stack(mode, layout, args, code) as stack:
        _start(stack)
        sampler = Sampler(stack, args.soak_interval)
        sampler.start()
        rounds: list[dict[str, Any]] = []
        sent = errors = completed = 0
        cpu_before = sampler.sample()["cpu"]  # the relay's CPU over the load window only
        began = time.monotonic()
        while (left := total_s - (time.monotonic() - began)) > 1.0:
            seconds = min(60.0, left)
            procs = []
            for scenario in mix:
                rate = args.soak_rate * scenario.concurrency / concurrency if args.soak_rate else 0.0
                argv = loadgen_argv(
                    stack, scenario, direct=False, duration=seconds, warmup=0.0, rate=rate, extra_watch=False
                )
                procs.append(
                    subprocess.Popen(
                        argv,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                        preexec_fn=pin_to(stack.layout.loadgen),
                    )
                )
            summary: dict[str, Any] = {}
            for scenario, proc in zip(mix, procs, strict=True):
                out, err = proc.communicate(timeout=seconds + 120)
                if proc.returncode != 0:
                    raise RuntimeError(f"loadgen failed ({proc.returncode}):\n{err.decode(errors='replace')}")
                result = finish_result(json.loads(out))
                sent += result["sent_total"]
                completed += result["completed_total"]
                errors += result["non_2xx"] + result["connection_errors"] + result["protocol_errors"]
                metric = "ttfb_ms" if scenario.stream else "latency_ms"
                summary[scenario.name] = {
                    "rps": round(result["rps"], 1),
                    "p50_ms": (result[metric] or {}).get("p50"),
                    "p99_ms": (result[metric] or {}).get("p99"),
                }
            summary["t_s"] = round(time.monotonic() - began, 1)  # when the round ended
            rounds.append(summary)
            rps = sum(v["rps"] for k, v in summary.items() if k != "t_s")
            log(
                f"  {summary['t_s']:6.0f}s: {rps:6.0f} req/s, "
                f"relay RSS {sampler.samples[-1]['rss'] / 2**20:.0f} MiB"
            )
        elapsed = time.monotonic() - began
        cpu = sampler.sample()["cpu"] - cpu_before
        sampler.stop()
        accounting = verify_accounting(stack, sent)
        samples = sampler.samples
        return {
            "mode": mode,
            "title": MODE_TITLES[mode],
            "workers": stack.workers,
            "minutes": args.soak,
            "concurrency": concurrency,
            "mix": ", ".join(f"{s.concurrency} {s.title}" for s in mix),
            "rate": args.soak_rate,
            "requests": completed,
            "rps": completed / elapsed if elapsed else 0.0,
            "errors": errors,
            "relay_us_per_req": cpu / completed * 1e6 if completed else None,
            "rss": rss_drift(samples, warmup_s, args.soak_interval),
            "samples": [{k: round(v, 2) for k, v in s.items()} for s in samples],
            "rounds": rounds,
            "accounting": accounting,
            "relay_errors": relay_errors(stack),
            "ok": accounting["ok"] and errors == 0,
        }


def rss_drift(samples: list[dict[str, float]], warmup_s: float, interval: float) -> dict[str, Any]:
    """RSS first/last/min/max, and its drift from the first sample after the warm-up: flat when every
    later sample stays within ±``RSS_TOLERANCE`` of that one."""
    values = [s["rss"] for s in samples]
    after = [s["rss"] for s in samples if s["t"] >= warmup_s] or values[-1:]
    baseline = after[0] if after else 0.0
    deviations = [v / baseline - 1 for v in after] if baseline else [0.0]
    largest = max(deviations, key=abs)
    return {
        "samples": len(values),
        "interval_s": interval,
        "warmup_s": warmup_s,
        "first": values[0] if values else None,
        "baseline": baseline,
        "last": values[-1] if values else None,
        "min": min(values, default=None),
        "max": max(values, default=None),
        "drift": deviations[-1],
        "max_deviation": largest,
        "tolerance": RSS_TOLERANCE,
        "pass": abs(largest) <= RSS_TOLERANCE,
    }
