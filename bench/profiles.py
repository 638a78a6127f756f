"""Profiles of the relay and the what-if relays that put a price on each part of the accounting.

``--profile``: the relay restarted twice under claude messages, once under cProfile (deterministic,
exact call counts, ~2x overhead) and once under ``profile_serve.py`` (a statistical profiler with
event-loop stall and GC pause figures); both summarised per package and per function.

``--what-if``: the c=1/16/64 relay phases again on relays changed in process: ``gc.freeze()`` after
start-up (full accounting kept), then parts of the accounting switched off cumulatively (these relays
do NOT account fully; the figures only say what each part costs).
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import signal
import time
from pathlib import Path
from typing import Any

from scenarios import SCENARIOS, Scenario, run_loadgen, wait_quiet
from stack import BENCH_DIR, RESULTS_DIR, ROOT, Stack, log


def _package_of(filename: str) -> str:
    if filename.startswith("~") or filename.startswith("<"):
        return "builtins/C (asyncio loop, orjson, sockets, ...)"
    path = filename.replace("\\", "/")
    for marker, name in (
        ("/aiproxy/gateway/", "aiproxy.gateway"),
        ("/aiproxy/billing/", "aiproxy.billing"),
        ("/aiproxy/store/", "aiproxy.store"),
        ("/aiproxy/", "aiproxy (other)"),
        ("/sqlalchemy/", "sqlalchemy"),
        ("/aiosqlite/", "aiosqlite"),
        ("/asyncpg/", "asyncpg"),
        ("/redis/", "redis"),
        ("/aiohttp/", "aiohttp"),
        ("/multidict/", "aiohttp"),
        ("/yarl/", "aiohttp"),
        ("/uvicorn/", "uvicorn"),
        ("/starlette/", "starlette/fastapi"),
        ("/fastapi/", "starlette/fastapi"),
        ("/asyncio/", "asyncio (stdlib)"),
    ):
        if marker in path:
            return name
    if "/lib/python3" in path:
        return "stdlib (other)"
    return "other"


def summarise_profile(prof: Path, requests: int, top: int = 25) -> dict[str, Any]:
    stats = pstats.Stats(str(prof))
    raw = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in raw.values())  # tottime
    by_package: dict[str, float] = {}
    rows = []
    for (filename, line, func), (cc, nc, tt, ct, _callers) in raw.items():
        package = _package_of(filename)
        by_package[package] = by_package.get(package, 0.0) + tt
        where = f"{_short(filename)}:{line}({func})" if not filename.startswith("~") else func
        rows.append({"function": where, "calls": nc, "tottime_s": tt, "cumtime_s": ct, "primitive": cc})
    per_req = (lambda s: s / requests * 1e6) if requests else (lambda s: 0.0)
    by_tottime = sorted(rows, key=lambda r: r["tottime_s"], reverse=True)[:top]
    relevant = [r for r in rows if "aiproxy" in r["function"] or "sqlalchemy" in r["function"]]
    by_cumtime = sorted(relevant, key=lambda r: r["cumtime_s"], reverse=True)[:top]
    for row in (*by_tottime, *by_cumtime):
        row["tottime_us_per_req"] = per_req(row["tottime_s"])
        row["cumtime_us_per_req"] = per_req(row["cumtime_s"])
    return {
        "profiled_s": total,
        "requests": requests,
        "profiled_us_per_req": per_req(total),
        "by_package": {
            k: {"s": v, "share": v / total if total else 0.0, "us_per_req": per_req(v)}
            for k, v in sorted(by_package.items(), key=lambda kv: kv[1], reverse=True)
        },
        "top_tottime": by_tottime,
        "top_cumtime_aiproxy_sqlalchemy": by_cumtime,
    }


def _short(filename: str) -> str:
    path = filename.replace("\\", "/")
    if "/aiproxy-bench-code-" in path:  # run.py's snapshot of src/
        return "aiproxy/" + path.split("/aiproxy/", 1)[1]
    for marker in ("/site-packages/", "/src/", "/lib/python3.11/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def profile_relay(stack: Stack, args: argparse.Namespace, stamp: str) -> dict[str, Any]:
    """Profile the relay under claude messages (c=16 unless --profile-concurrency), two ways:
    cProfile (deterministic, exact call counts, ~2x overhead) and ``profile_serve.py`` (statistical,
    low overhead, right inclusive shares through coroutine and greenlet switches, plus event-loop
    stalls and GC pauses)."""
    mode = stack.backend.mode
    c = args.profile_concurrency
    scenario = Scenario(f"profile_c{c}", "claude messages (profiled)", "claude", c)
    stack.stop_relay()

    prof = RESULTS_DIR / f"{stamp}-{mode}-relay.prof"
    stack.start_relay(launcher=["-m", "cProfile", "-o", str(prof), "-m", "aiproxy"], name="relay-cprofile")
    log(f"  cProfile: claude messages c={c} for {args.profile_duration:g}s ...")
    loaded = run_loadgen(stack, scenario, direct=False, duration=args.profile_duration, warmup=args.warmup)
    log(f"    {loaded['rps']:8.0f} req/s under cProfile (its overhead included)")
    stack.stop_relay()  # the profile is written when the relay exits
    if not prof.exists():
        raise RuntimeError("the cProfile'd relay wrote no profile")
    # cProfile covers start-up and warmup too: per-request figures divide by every request served.
    cprofile = summarise_profile(prof, loaded["completed_total"])
    cprofile["load"] = {"rps": loaded["rps"], "requests": loaded["completed_total"]}
    cprofile["file"] = str(prof.relative_to(ROOT))
    text = RESULTS_DIR / f"{stamp}-{mode}-relay-profile.txt"
    with open(text, "w") as fh:
        stats = pstats.Stats(str(prof), stream=fh)
        stats.sort_stats("tottime").print_stats(60)
        stats.sort_stats("cumulative").print_stats(80)
    cprofile["text"] = str(text.relative_to(ROOT))

    sampled_out = RESULTS_DIR / f"{stamp}-{mode}-relay-sampled.json"
    launcher = [str(BENCH_DIR / "profile_serve.py"), "--out", str(sampled_out)]
    if args.profile_gc_threshold:
        launcher += ["--gc-threshold", args.profile_gc_threshold]
    stack.start_relay(launcher=[*launcher, "--"], name="relay-sampled")
    assert stack.relay is not None
    log(f"  sampling profiler: claude messages c={c} for {args.profile_duration:g}s ...")
    os.kill(stack.relay.pid, signal.SIGUSR1)
    loaded = run_loadgen(stack, scenario, direct=False, duration=args.profile_duration, warmup=args.warmup)
    os.kill(stack.relay.pid, signal.SIGUSR2)
    log(f"    {loaded['rps']:8.0f} req/s while sampled")
    sent = loaded["sent_total"]
    stack.stop_relay()
    sampled = summarise_samples(json.loads(sampled_out.read_text()), loaded["completed_total"])
    sampled["load"] = {
        "rps": loaded["rps"],
        "requests": loaded["completed_total"],
        "relay_us_per_req": loaded["cpu"].get("relay_us_per_req"),
    }
    sampled["file"] = str(sampled_out.relative_to(ROOT))
    sampled["folded"] = str(sampled_out.with_suffix(".folded").relative_to(ROOT))
    return {"cprofile": cprofile, "sampled": sampled, "requests_sent": sent}


def summarise_samples(data: dict[str, Any], requests: int) -> dict[str, Any]:
    """Shares of the relay's CPU by package (self time) and the heaviest inclusive entries."""
    samples = data["samples"] or 1
    us_per_sample = data["window_cpu_s"] / samples * 1e6

    def us(count: float) -> float:
        return count * us_per_sample / requests if requests else 0.0

    by_package: dict[str, int] = {}
    for filename, count in data["self_by_file"].items():
        package = _package_of("~" if filename.startswith("<no Python frame") else filename)
        by_package[package] = by_package.get(package, 0) + count
    return {
        "samples": data["samples"],
        "window_cpu_s": data["window_cpu_s"],
        "self_by_package": {
            k: {"share": v / samples, "us_per_req": us(v)}
            for k, v in sorted(by_package.items(), key=lambda kv: -kv[1])
        },
        "top_self": [{**r, "us_per_req": us(r["samples"])} for r in data["top_self"][:25]],
        "top_inclusive_aiproxy": [
            {**r, "us_per_req": us(r["samples"])}
            for r in data["top_inclusive"]
            if "aiproxy/" in r["function"] or "sqlalchemy/" in r["function"]
        ][:30],
        "stalls": data["stalls"],
        "gc": data.get("gc"),
        "recorder": data["recorder"],
    }


def what_if(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """Price each part of the accounting: the relay phases again with parts switched off, cumulatively,
    and once with full accounting but ``gc.freeze()`` after start-up (full collections skip the
    start-up heap).

    These relays do NOT account fully (their requests are not logged); the figures only say how
    much each part costs. The user-concurrency slots are switched off through the admin API (the
    key cache picks the change up within 5 s); the others by ``profile_serve.py --disable``.
    """
    # (title, parts switched off, user slot off, gc.freeze()); the first keeps full accounting.
    variants = [
        ("full accounting + gc.freeze() after start-up", "", False, True),
        # What a request's database writes cost the relay's process: a writer elsewhere would save it.
        ("journal only (no database writes)", "database", False, False),
    ]
    if stack.accounts_per_family > 1:
        variants += [
            ("no recorder", "recorder", False, False),
            ("no recorder, no sticky session", "recorder,sticky", False, False),
            ("no recorder, no sticky session, no user slot", "recorder,sticky", True, False),
        ]
    else:  # one account per protocol: the relay skips sticky sessions anyway
        variants += [
            ("no recorder", "recorder", False, False),
            ("no recorder, no user slot", "recorder", True, False),
        ]
    chosen = [s for s in SCENARIOS if s.name in ("claude_c1", "claude_c16", "claude_c64")]
    out: dict[str, Any] = {}
    stack.stop_relay()
    try:
        for title, parts, no_slots, freeze in variants:
            launcher = [str(BENCH_DIR / "profile_serve.py"), "--out", str(stack.workdir / "what-if.json")]
            launcher += ["--no-stall-monitor", "--disable", parts, *(["--gc-freeze"] if freeze else []), "--"]
            stack.start_relay(launcher=launcher, name="relay-what-if")
            if no_slots:
                stack.set_user_concurrency(0)
                time.sleep(5.5)  # the key cache holds caller snapshots for 5 s
            for scenario in chosen:
                wait_quiet(args.quiet_wait, args.quiet_threshold)
                log(f"  what-if [{title}] {scenario.name} for {args.duration:g}s ...")
                result = run_loadgen(
                    stack, scenario, direct=False, duration=args.duration, warmup=args.warmup
                )
                lat = result["latency_ms"] or {}
                log(
                    f"    {result['rps']:8.0f} req/s  p50 {lat.get('p50', 0):.3f} ms"
                    f"  p99 {lat.get('p99', 0):.3f} ms"
                    f"  relay {result['cpu'].get('relay_us_per_req') or 0:.0f} µs/req"
                )
                out.setdefault(title, {})[scenario.name] = result
            stack.stop_relay()
    finally:
        if stack.relay is not None:
            stack.stop_relay()
    return out
