"""Two relays against each other, interleaved: is a change faster, and by how much?

`run.py` measures one version of the relay against direct calls; comparing two of its runs made
minutes apart mixes the change with whatever else the box did meanwhile (on a shared VM, ±15% in
relay CPU per request from one run to the next). This runs both versions in one go instead: two
stacks side by side (each with its own mock, data dir or database, and relay, pinned alike), and
the same scenario alternately through each, A B B A A B ..., for several short rounds. The table
shows the medians, and the change as the median of the per-round ratios with their middle half
(the 25th to 75th percentile), so the noise is in plain view next to the effect. Many short rounds
pair better than a few long ones: the box's speed drifts over seconds.

    .venv/bin/python bench/ab.py --against HEAD~1                       # the last commit's effect
    .venv/bin/python bench/ab.py --env-b AIPROXY_JOURNAL=false            # what a setting costs
    .venv/bin/python bench/ab.py --against main --modes sqlite,pg --rounds 30 --duration 0.7 --warmup 0.2

Variant A runs the code of `--against` (default: the working tree, like B) with `--env-a`; variant
B runs the working tree with `--env-b`; `--python-a`/`--python-b` run a variant's relay and mock on
another interpreter (a venv with the project installed). Afterwards each stack's request log must
hold exactly one row per request sent to it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import statistics
import subprocess
import tarfile
import tempfile
import time
from datetime import datetime
from io import BytesIO
from pathlib import Path
from typing import Any

from scenarios import SCENARIOS, Scenario, run_loadgen, verify_accounting, wait_quiet
from stack import (
    MODE_TITLES,
    PYTHON,
    RESULTS_DIR,
    ROOT,
    Stack,
    choose_layout,
    log,
    mode_stack,
    snapshot_code,
)

DEFAULT_SCENARIOS = "claude_c1,claude_c16,claude_c64,claude_stream_c1,openai_c16"


def export_revision(revision: str, into: Path) -> str:
    """`src/aiproxy` as committed at `revision`, written under `into` (first on the relay's path)."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", revision], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    archive = subprocess.run(
        ["git", "archive", "--format=tar", commit, "src/aiproxy"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into / "_export", filter="data")
    shutil.move(into / "_export" / "src" / "aiproxy", into / "aiproxy")
    shutil.rmtree(into / "_export")
    return commit


def _settings(pairs: list[str], flag: str) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.startswith("AIPROXY_"):
            raise SystemExit(f"{flag} takes AIPROXY_NAME=VALUE, got {pair!r}")
        out[name] = value
    return out


def _phase(stack: Stack, scenario: Scenario, args: argparse.Namespace) -> dict[str, Any]:
    wait_quiet(args.quiet_wait, args.quiet_threshold)
    result = run_loadgen(stack, scenario, direct=False, duration=args.duration, warmup=args.warmup)
    time.sleep(0.3)  # let the recorder flush the tail before the next phase
    lat = result["latency_ms"] or {}
    ttfb = result.get("ttfb_ms") or {}
    return {
        "us_per_req": result["cpu"].get("relay_us_per_req"),
        "rps": result["rps"],
        "p50_ms": (ttfb if scenario.stream else lat).get("p50"),
        "p99_ms": (ttfb if scenario.stream else lat).get("p99"),
        "errors": result["non_2xx"] + result["connection_errors"] + result["protocol_errors"],
        "sent": result["sent_total"],
        "other_cpu_s": result["other_cpu_s"],
    }


def run_mode(mode: str, args: argparse.Namespace, codes: dict[str, Path]) -> dict[str, Any]:
    layout = choose_layout(args.pin, 1)
    log(f"\n== mode {mode}: {MODE_TITLES[mode]} ({layout.describe()})")
    chosen = [s for s in SCENARIOS if s.name in args.scenarios]
    rounds: dict[str, list[dict[str, Any]]] = {s.name: [] for s in chosen}
    with contextlib.ExitStack() as stacks:
        sides: dict[str, Stack] = {}
        for side in ("A", "B"):
            env = args.env_a if side == "A" else args.env_b
            python = args.python_a if side == "A" else args.python_b
            stack = stacks.enter_context(
                mode_stack(mode, layout, args, codes[side], extra_env=env, python=python)
            )
            stack.configure()
            stack.start_mock()
            stack.start_relay(name=f"relay-{side}")
            stack.setup_admin()
            sides[side] = stack
        sent = {"A": 0, "B": 0}
        for number in range(args.rounds):
            order = ("A", "B") if number % 2 == 0 else ("B", "A")  # A B B A ...: a drift hits both alike
            for scenario in chosen:
                pair = {}
                for side in order:
                    pair[side] = _phase(sides[side], scenario, args)
                    sent[side] += pair[side]["sent"]
                rounds[scenario.name].append(pair)
                a, b = pair["A"]["us_per_req"] or 0, pair["B"]["us_per_req"] or 0
                log(f"  round {number + 1} {scenario.name:18} A {a:6.0f} µs/req  B {b:6.0f} µs/req")
        accounting = {}
        for side, stack in sides.items():
            accounting[side] = verify_accounting(stack, sent[side])
            mark = "OK" if accounting[side]["ok"] else "MISMATCH"
            log(f"  accounting {side} {mark}: sent {sent[side]}, logged {accounting[side]['logged_total']}")
    return {
        "mode": mode,
        "layout": layout.describe(),
        "scenarios": {name: summarize(pairs) for name, pairs in rounds.items()},
        "rounds": rounds,
        "accounting": accounting,
    }


def _median(pairs: list[dict[str, Any]], side: str, field: str) -> float | None:
    values = [p[side][field] for p in pairs if p[side][field] is not None]
    return statistics.median(values) if values else None


def summarize(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians per side; the change in CPU per request as the median of per-round B/A ratios."""
    cpu = [(p["A"]["us_per_req"], p["B"]["us_per_req"]) for p in pairs]
    ratios = sorted(b / a for a, b in cpu if a and b)
    out: dict[str, Any] = {
        side: {field: _median(pairs, side, field) for field in ("us_per_req", "rps", "p50_ms", "p99_ms")}
        for side in ("A", "B")
    }
    out["errors"] = sum(p[side]["errors"] for p in pairs for side in ("A", "B"))
    tails = [p["B"]["p99_ms"] / p["A"]["p99_ms"] for p in pairs if p["A"]["p99_ms"] and p["B"]["p99_ms"]]
    if tails:  # the tail, paired the same way (it is noisier than the CPU)
        out["p99_change"] = statistics.median(tails) - 1
    if ratios:
        # The middle half of the rounds: a few rounds hit by the box's own noise do not widen it.
        low, _, high = statistics.quantiles(ratios, n=4) if len(ratios) >= 4 else (ratios[0], 0, ratios[-1])
        out["cpu_change"] = {"median": statistics.median(ratios) - 1, "low": low - 1, "high": high - 1}
    return out


def print_report(report: dict[str, Any]) -> None:
    meta = report["meta"]
    print(f"\nA: {meta['a']}\nB: {meta['b']}")
    rounds, seconds = meta["rounds"], meta["duration_s"]
    print(f"{rounds} rounds of {seconds:g} s per side and scenario, interleaved A B B A ...")
    for mode in report["modes"]:
        print(f"\n== {mode['mode']}: {MODE_TITLES[mode['mode']]}")
        print(
            f"{'scenario':18} {'µs/req A':>9} {'µs/req B':>9} {'B vs A (middle half)':>22}"
            f" {'req/s A':>8} {'req/s B':>8} {'p50 A/B ms':>14} {'p99 A/B ms (B vs A)':>24}"
        )
        for name, s in mode["scenarios"].items():
            a, b = s["A"], s["B"]
            change = s.get("cpu_change")
            span = (
                f"{change['median'] * 100:+6.1f}% ({change['low'] * 100:+.0f}..{change['high'] * 100:+.0f}%)"
                if change
                else "-"
            )
            print(
                f"{name:18} {a['us_per_req'] or 0:9.0f} {b['us_per_req'] or 0:9.0f} {span:>22}"
                f" {a['rps']:8.0f} {b['rps']:8.0f} {a['p50_ms'] or 0:6.3f}/{b['p50_ms'] or 0:<6.3f}"
                f"  {a['p99_ms'] or 0:6.2f}/{b['p99_ms'] or 0:<6.2f}"
                + (f" ({s['p99_change'] * 100:+.0f}%)" if "p99_change" in s else "")
                + (f"  errors {s['errors']}" if s["errors"] else "")
            )
        for side, acc in mode["accounting"].items():
            mark = "OK" if acc["ok"] else "MISMATCH"
            print(f"accounting {side}: {acc['requests_sent']} sent, {acc['logged_total']} logged -> {mark}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="two relay versions or settings, interleaved")
    p.add_argument("--against", help="git revision A runs (default: the working tree, as B)")
    p.add_argument("--env-a", action="append", default=[], help="AIPROXY_NAME=VALUE for A (repeatable)")
    p.add_argument("--env-b", action="append", default=[], help="AIPROXY_NAME=VALUE for B (repeatable)")
    p.add_argument("--python-a", default=PYTHON, help="interpreter of A's relay and mock (default this one)")
    p.add_argument("--python-b", default=PYTHON, help="interpreter of B's relay and mock (default this one)")
    p.add_argument("--modes", default="sqlite", help="comma list of sqlite,pg (default sqlite)")
    p.add_argument("--scenarios", default=DEFAULT_SCENARIOS, help=f"comma list (default {DEFAULT_SCENARIOS})")
    p.add_argument("--rounds", type=int, default=6, help="rounds (default 6)")
    p.add_argument("--duration", type=float, default=3.0, help="measured seconds per phase (default 3)")
    p.add_argument("--warmup", type=float, default=0.5, help="unrecorded seconds per phase (default 0.5)")
    p.add_argument("--pin", choices=("auto", "none"), default="auto", help="CPU pinning (default auto)")
    p.add_argument("--quiet-wait", type=float, default=20.0, help="max seconds to wait for a quiet box")
    p.add_argument("--quiet-threshold", type=float, default=0.15, help="busy fraction counted as quiet")
    p.add_argument("--user-max-concurrency", type=int, default=10_000, help="the bench user's slot limit")
    p.add_argument("--accounts-per-family", type=int, default=1, help="accounts per protocol (default 1)")
    p.add_argument("--keep", action="store_true", help="keep the work dirs (logs, SQLite files)")
    p.add_argument("--out", type=Path, help="result file (default bench/results/<timestamp>-ab.json)")
    p.add_argument("--report", type=Path, help="only print the tables of a saved result file")
    args = p.parse_args(argv)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if unknown := [m for m in args.modes if m not in MODE_TITLES]:
        p.error(f"unknown mode(s) {unknown}; use sqlite and/or pg")
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if unknown := [s for s in args.scenarios if s not in {sc.name for sc in SCENARIOS}]:
        p.error(f"unknown scenario(s) {unknown}; use {DEFAULT_SCENARIOS}")
    if args.rounds < 2:
        p.error("--rounds needs at least 2 (A B, then B A)")
    args.env_a = _settings(args.env_a, "--env-a")
    args.env_b = _settings(args.env_b, "--env-b")
    return args


def _describe(code: str, env: dict[str, str], python: str) -> str:
    interpreter = "" if python == PYTHON else f" on {python}"
    return code + "".join(f" {k}={v}" for k, v in env.items()) + interpreter


def _terminate(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        report = json.loads(args.report.read_text())
        for mode in report["modes"]:  # summarized again: the summary may have changed since
            mode["scenarios"] = {name: summarize(pairs) for name, pairs in mode["rounds"].items()}
        print_report(report)
        return 0
    signal.signal(signal.SIGTERM, _terminate)
    RESULTS_DIR.mkdir(exist_ok=True)
    out = args.out or RESULTS_DIR / f"{datetime.now():%Y%m%d-%H%M%S}-ab.json"
    workdir = Path(tempfile.mkdtemp(prefix="aiproxy-bench-ab-"))
    codes = {"A": workdir / "a", "B": workdir / "b"}
    report: dict[str, Any] = {"modes": []}
    try:
        version = snapshot_code(codes["B"])
        tree = f"{version['git_head']} + {len(version['src_changes'])} uncommitted files in src/"
        a_code = tree
        if args.against:
            codes["A"].mkdir()
            a_code = export_revision(args.against, codes["A"])
        else:
            codes["A"] = codes["B"]
        report["meta"] = {
            "started": datetime.now().isoformat(timespec="seconds"),
            "a": _describe(a_code, args.env_a, args.python_a),
            "b": _describe(tree, args.env_b, args.python_b),
            "rounds": args.rounds,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "scenarios": args.scenarios,
        }
        log(f"A: {report['meta']['a']}\nB: {report['meta']['b']}")
        for mode in args.modes:
            report["modes"].append(run_mode(mode, args, codes))
    except KeyboardInterrupt:
        log("interrupted: everything started was stopped and cleaned up")
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if report["modes"]:
            out.write_text(json.dumps(report, indent=2, default=str))
    print_report(report)
    print(f"results: {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0 if all(acc["ok"] for m in report["modes"] for acc in m["accounting"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
