"""The scenarios of the relay-vs-direct comparison, how each phase runs, and the accounting check.

A scenario is one kind of request at one concurrency (claude messages at c=1/16/64, a claude stream
at c=1 for its time to first byte, openai chat at c=16). Each runs as a *direct* phase (straight at
the mock) and then a *relay* phase (the same request through the relay), back to back, with
``loadgen.py`` in a process of its own; ``--repeat`` runs the pair several times and the quietest
repetition is shown. Afterwards the request log must hold exactly one row per request sent to the
relay, warmups included.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from dataclasses import dataclass
from typing import Any

import psutil
from stack import LOADGEN, PYTHON, Stack, log, pin_to

CLAUDE_MODEL = "claude-sonnet-4-5"
OPENAI_MODEL = "gpt-4o-mini"
CLAUDE_BODY = {
    "model": CLAUDE_MODEL,
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Hello, benchmark! Please answer briefly."}],
}
OPENAI_BODY = {
    "model": OPENAI_MODEL,
    "messages": [{"role": "user", "content": "Hello, benchmark! Please answer briefly."}],
}
ANTHROPIC_VERSION = "2023-06-01"


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    title: str
    protocol: str  # claude | openai
    concurrency: int
    stream: bool = False


SCENARIOS = (
    Scenario("claude_c1", "claude messages", "claude", 1),
    Scenario("claude_c16", "claude messages", "claude", 16),
    Scenario("claude_c64", "claude messages", "claude", 64),
    Scenario("claude_stream_c1", "claude stream (TTFB)", "claude", 1, stream=True),
    Scenario("openai_c16", "openai chat", "openai", 16),
)


def request_for(stack: Stack, scenario: Scenario, *, direct: bool) -> tuple[str, dict[str, str], bytes]:
    if scenario.protocol == "claude":
        body = {**CLAUDE_BODY, "stream": True} if scenario.stream else CLAUDE_BODY
        url = stack.mock_url + "/v1/messages" if direct else stack.relay_url + "/claude/v1/messages"
        key = "bench" if direct else stack.api_key
        headers = {"x-api-key": key, "anthropic-version": ANTHROPIC_VERSION}
    else:
        body = {**OPENAI_BODY, "stream": True} if scenario.stream else OPENAI_BODY
        url = (
            stack.mock_url + "/v1/chat/completions"
            if direct
            else stack.relay_url + "/openai/v1/chat/completions"
        )
        headers = {"authorization": f"Bearer {'bench' if direct else stack.api_key}"}
    return url, headers, json.dumps(body, separators=(",", ":")).encode()


def loadgen_argv(
    stack: Stack,
    scenario: Scenario,
    *,
    direct: bool,
    duration: float,
    warmup: float,
    rate: float = 0.0,
    extra_watch: bool = True,
) -> list[str]:
    """The ``loadgen.py`` command of one phase (its request body written to the work dir)."""
    url, headers, body = request_for(stack, scenario, direct=direct)
    body_file = stack.workdir / f"body-{scenario.name}.json"
    body_file.write_bytes(body)
    watch = {"mock": str(stack.mock.pid if stack.mock else 0)}
    if stack.relay is not None:
        watch["relay"] = stack.relay_watch()  # with several workers: all of them, summed
    if not direct and extra_watch:
        watch.update({name: str(pid) for name, pid in stack.backend.extra_watch().items()})
    argv = [PYTHON, str(LOADGEN), url, "-c", str(scenario.concurrency), "-d", str(duration)]
    argv += ["-w", str(warmup), "--body-file", str(body_file), "--json"]
    if rate > 0:
        argv += ["--rate", str(rate)]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    for name, pids in watch.items():
        argv += ["--watch", f"{name}={pids}"]
    return argv


def finish_result(result: dict[str, Any]) -> dict[str, Any]:
    """Add what the bench derives from a load generator's output: the CPU the rest of the box used
    (noise indicator) and, in the pg mode, the stores' CPU per request."""
    cpu = result["cpu_s"]
    ours = sum(v for k, v in cpu.items() if k != "box_busy_fraction")
    box = cpu.get("box_busy_fraction", 0.0) * (os.cpu_count() or 1) * result["duration_s"]
    result["other_cpu_s"] = max(0.0, box - ours)  # everything else on the box: noise indicator
    stores = [v for k, v in cpu.items() if k.startswith("pg") or k == "redis"]
    if stores and result["requests"]:
        result["cpu"]["stores_us_per_req"] = sum(stores) / result["requests"] * 1e6
    return result


def run_loadgen(
    stack: Stack, scenario: Scenario, *, direct: bool, duration: float, warmup: float
) -> dict[str, Any]:
    argv = loadgen_argv(stack, scenario, direct=direct, duration=duration, warmup=warmup)
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        preexec_fn=pin_to(stack.layout.loadgen),
        timeout=duration + warmup + 120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"loadgen failed ({done.returncode}):\n{done.stderr}")
    return finish_result(json.loads(done.stdout))


def added(relay: dict[str, Any] | None, direct: dict[str, Any] | None, metric: str, q: str) -> float | None:
    if not relay or not direct or not relay.get(metric) or not direct.get(metric):
        return None
    return float(relay[metric][q] - direct[metric][q])


def wait_quiet(max_wait: float, threshold: float) -> float:
    """Wait (up to ``max_wait`` s) until the box is nearly idle between phases; returns the last busy
    fraction seen (whole box, 0..1). Our own processes are idle then, so this is everybody else."""
    deadline = time.monotonic() + max_wait
    while True:
        busy = psutil.cpu_percent(interval=0.5) / 100.0
        if busy <= threshold or time.monotonic() >= deadline:
            return busy
        log(f"    box busy {busy * 100:.0f}% before the phase: waiting for it to calm down ...")


def _noise(run: dict[str, Any]) -> float:
    return float(run["direct"].get("other_cpu_s", 0.0) + run["relay"].get("other_cpu_s", 0.0))


def pick_repetition(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The repetition during which the rest of the box was quietest (least CPU used by processes
    that are not part of the bench). Chosen on the noise, not on the result; all stay in the JSON."""
    return min(runs, key=_noise)


def scenario_result(scenario: Scenario, runs: list[dict[str, Any]]) -> dict[str, Any]:
    chosen = pick_repetition(runs)
    d, r = chosen["direct"], chosen["relay"]
    metric = "ttfb_ms" if scenario.stream else "latency_ms"
    return {
        "title": scenario.title,
        "concurrency": scenario.concurrency,
        "stream": scenario.stream,
        "direct": d,
        "relay": r,
        "added_ms": {q: added(r, d, metric, q) for q in ("p50", "p90", "p99")},
        "relay_cpu_us_per_req": r["cpu"].get("relay_us_per_req"),
        "repetition": runs.index(chosen) + 1,
        "repetitions": runs if len(runs) > 1 else None,
    }


def run_scenarios(stack: Stack, args: argparse.Namespace) -> tuple[dict[str, Any], int]:
    """Every scenario, ``--repeat`` times (direct then relay back to back); returns the results and
    the number of requests sent to the relay (warmups included)."""
    out: dict[str, Any] = {}
    relay_sent = 0
    for scenario in SCENARIOS:
        runs = []
        for rep in range(args.repeat):
            run: dict[str, Any] = {}
            for side in ("direct", "relay"):
                background = wait_quiet(args.quiet_wait, args.quiet_threshold)
                tag = f" #{rep + 1}" if args.repeat > 1 else ""
                log(f"  {scenario.name:18} {side:6} c={scenario.concurrency} for {args.duration:g}s{tag} ...")
                result = run_loadgen(
                    stack, scenario, direct=side == "direct", duration=args.duration, warmup=args.warmup
                )
                result["box_busy_before"] = background
                run[side] = result
                if side == "relay":
                    relay_sent += result["sent_total"]
                lat = result["latency_ms"] or {}
                log(
                    f"    {result['rps']:8.0f} req/s  p50 {lat.get('p50', 0):.3f} ms"
                    f"  p99 {lat.get('p99', 0):.3f} ms  status {result['status']}"
                    f"  other-cpu {result['other_cpu_s']:.2f}s"
                )
                time.sleep(0.3)  # let the recorder flush the tail before the next phase
            runs.append(run)
        out[scenario.name] = scenario_result(scenario, runs)
    return out, relay_sent


def verify_accounting(stack: Stack, expected: int, timeout: float = 120.0) -> dict[str, Any]:
    """Wait for the recorder to flush, then compare the request log with what was sent."""
    started = time.monotonic()
    logged, last_change, previous = 0, started, -1
    while time.monotonic() - started < timeout:
        logged = stack.logged_total()
        if logged != previous:
            previous, last_change = logged, time.monotonic()
        if logged >= expected or time.monotonic() - last_change > 10:
            break
        time.sleep(0.5)
    waited = time.monotonic() - started
    key_count = stack.key_request_count()
    return {
        "requests_sent": expected,
        "logged_total": logged,
        "api_key_request_count": key_count,
        "flush_wait_s": round(waited, 2),
        "ok": logged == expected and key_count == expected,
    }
