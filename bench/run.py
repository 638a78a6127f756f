"""Relay vs direct-to-mock benchmark, both measured in the same run; and the relay's capacity.

For each storage mode (``sqlite``: SQLite + in-process state; ``pg``: PostgreSQL + Redis) this starts
the fake vendor upstream and the relay (one uvicorn worker, or ``--workers N``) on a fresh data dir,
configures the relay through the admin HTTP API (an Anthropic and an OpenAI account pointing at the
mock, one unlimited user key), then runs each scenario twice back to back with ``bench/loadgen.py``:
straight at the mock ("direct") and through the relay. It reports requests/s, latency percentiles,
the latency the relay adds, stream time-to-first-byte and the relay's CPU time per request; waits
for the relay's usage recorder to flush and checks that the request log holds exactly one row per
request sent.

    .venv/bin/python bench/run.py [--duration 10] [--modes sqlite,pg] [--quick] [--profile]
    .venv/bin/python bench/run.py --workers 1,2 --modes sqlite        # the scaling table
    .venv/bin/python bench/run.py --streams 10000 --modes sqlite      # instead of the scenarios
    .venv/bin/python bench/run.py --soak 30 --modes sqlite            # likewise

The pieces: ``stack.py`` (processes, backends, pinning, the admin setup), ``scenarios.py`` (the
scenarios, phases and the accounting check), ``profiles.py`` (``--profile``, ``--what-if``),
``capacity.py`` (``--streams``, ``--soak``), ``report.py`` (tables, targets, ``--report``).

Everything it starts is stopped again, the PostgreSQL database it creates is dropped and its Redis
keys are deleted. Results go to ``bench/results/<timestamp>.json`` (git-ignored).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from capacity import run_soak, run_streams
from profiles import profile_relay, what_if
from report import TARGETS, check_targets, print_report, reprint
from scenarios import run_scenarios, verify_accounting
from stack import MODE_TITLES, RESULTS_DIR, ROOT, Layout, choose_layout, log, mode_stack, snapshot_code


def run_mode(
    mode: str, layout: Layout, args: argparse.Namespace, stamp: str, code: Path, workers: int = 1
) -> dict[str, Any]:
    tag = f", {workers} workers" if workers > 1 else ""
    log(f"\n== mode {mode}: {MODE_TITLES[mode]}{tag} ({layout.describe()})")
    with mode_stack(mode, layout, args, code, workers=workers) as stack:
        stack.configure()
        stack.start_mock()
        stack.start_relay()
        stack.setup_admin()
        assert stack.mock is not None and stack.relay is not None
        pids = stack.relay_pids()
        log(
            f"  mock on :{stack.mock_port} (pid {stack.mock.pid}), "
            f"relay on :{stack.relay_port} (pid {stack.relay.pid})"
            + (f", workers {pids[1:]}" if workers > 1 else "")
        )
        load_before = os.getloadavg()
        scenarios, sent = run_scenarios(stack, args)
        log(f"  waiting for the recorder to flush, then checking the request log against {sent} requests ...")
        accounting = verify_accounting(stack, sent)
        mark = "OK" if accounting["ok"] else "MISMATCH"
        log(
            f"  accounting {mark}: sent {sent}, logged {accounting['logged_total']}, "
            f"key request_count {accounting['api_key_request_count']}"
        )
        result: dict[str, Any] = {
            "mode": mode,
            "title": MODE_TITLES[mode],
            "workers": workers,
            "layout": layout.describe(),
            "loadavg_before": load_before,
            "scenarios": scenarios,
            "accounting": accounting,
        }
        # The profilers and the what-if relays wrap one process: they run with one worker only.
        if args.profile and mode in args.profile_modes and workers == 1:
            result["profile"] = profile_relay(stack, args, stamp)
        if args.what_if and workers == 1:
            result["what_if"] = what_if(stack, args)
        return result


def _meta(args: argparse.Namespace, layout: Layout) -> dict[str, Any]:
    meta = {
        "started": datetime.now().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "layout": layout.describe(),
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "modes": args.modes,
        "quick": args.quick,
        "repeat": args.repeat,
        "quiet_wait_s": args.quiet_wait,
        "quiet_threshold": args.quiet_threshold,
        "pin": args.pin,
        "user_max_concurrency": args.user_max_concurrency,
        "accounts_per_family": args.accounts_per_family,
        "workers": args.workers,
    }
    if args.streams:
        meta["streams"] = {"count": args.streams, "hold_s": args.stream_hold}
    if args.soak:
        meta["soak"] = {
            "minutes": args.soak,
            "rate": args.soak_rate,
            "concurrency": args.soak_concurrency,
            "interval_s": args.soak_interval,
        }
    return meta


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="aiproxy relay vs direct-to-mock benchmark")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per phase (default 10)")
    p.add_argument("--warmup", type=float, default=None, help="unrecorded seconds per phase (default 1)")
    p.add_argument("--modes", default="sqlite,pg", help="comma list of sqlite,pg (default both)")
    p.add_argument("--quick", action="store_true", help="3 s phases, 0.5 s warmup (a smoke run)")
    p.add_argument(
        "--repeat", type=int, default=1, help="runs per scenario; the quietest one is shown (default 1)"
    )
    p.add_argument(
        "--quiet-wait", type=float, default=20.0, help="max seconds to wait for a calm box per phase"
    )
    p.add_argument(
        "--quiet-threshold", type=float, default=0.15, help="calm = whole-box busy fraction below this"
    )
    p.add_argument("--pin", choices=("auto", "none"), default="auto", help="CPU pinning (default auto)")
    p.add_argument(
        "--workers",
        default="1",
        help="relay worker processes; a comma list (1,2) runs the scenarios once per count (default 1)",
    )
    p.add_argument("--profile", action="store_true", help="also profile the relay under cProfile")
    p.add_argument("--profile-modes", default="sqlite", help="modes to profile (default sqlite)")
    p.add_argument("--profile-concurrency", type=int, default=16, help="profiled load's c (default 16)")
    p.add_argument("--profile-duration", type=float, default=10.0, help="profiled load seconds (default 10)")
    p.add_argument(
        "--profile-gc-threshold",
        help="A,B,C: the sampled relay's gc.set_threshold (default: the relay's own)",
    )
    p.add_argument(
        "--user-max-concurrency",
        type=int,
        default=10_000,
        help="the bench user's concurrency limit (default 10000: on, never reached; 0 = off)",
    )
    p.add_argument(
        "--accounts-per-family",
        type=int,
        default=1,
        help="accounts per protocol, all on the mock (default 1; 2+ adds sticky sessions per request)",
    )
    p.add_argument(
        "--what-if",
        action="store_true",
        help="also rerun c=1/c=16 with accounting parts switched off, to price each part",
    )
    capacity = p.add_argument_group("capacity modes (run instead of the scenarios)")
    capacity.add_argument(
        "--streams", type=int, default=0, help="hold N concurrent slow streams (e.g. 10000)"
    )
    capacity.add_argument("--stream-hold", type=float, default=30.0, help="seconds each stream lasts (30)")
    capacity.add_argument("--soak", type=float, default=0.0, help="minutes of mixed load, RSS sampled")
    capacity.add_argument(
        "--soak-rate", type=float, default=500.0, help="soak req/s in all (default 500; 0 = closed loop)"
    )
    capacity.add_argument("--soak-concurrency", type=int, default=8, help="soak connections (default 8)")
    capacity.add_argument("--soak-interval", type=float, default=10.0, help="seconds between RSS samples")
    capacity.add_argument(
        "--soak-warmup", type=float, default=None, help="seconds before the RSS baseline (20%%, at most 120)"
    )
    p.add_argument("--keep", action="store_true", help="keep the work dirs (logs, SQLite files)")
    p.add_argument("--out", type=Path, help="result file (default bench/results/<timestamp>.json)")
    p.add_argument("--report", type=Path, help="only print the tables of a saved result file")
    p.add_argument("--markdown", action="store_true", help="with --report: as Markdown tables")
    args = p.parse_args(argv)
    if args.quick:
        args.duration = min(args.duration, 3.0)
        args.profile_duration = min(args.profile_duration, 5.0)
    if args.warmup is None:
        args.warmup = 0.5 if args.quick else 1.0
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    args.profile_modes = [m.strip() for m in args.profile_modes.split(",") if m.strip()]
    unknown = [m for m in args.modes if m not in MODE_TITLES]
    if unknown:
        p.error(f"unknown mode(s) {unknown}; use sqlite and/or pg")
    try:
        args.workers = [int(w) for w in args.workers.split(",") if w.strip()]
    except ValueError:
        p.error(f"--workers takes a comma list of numbers, got {args.workers!r}")
    if not args.workers or min(args.workers) < 1:
        p.error("--workers needs counts of at least 1")
    if args.streams < 0 or args.soak < 0:
        p.error("--streams and --soak take positive numbers")
    return args


def _terminate(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        return reprint(args.report, markdown=args.markdown)
    signal.signal(signal.SIGTERM, _terminate)
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    layout = choose_layout(args.pin, args.workers[0])
    report: dict[str, Any] = {"meta": _meta(args, layout), "targets": TARGETS, "modes": []}
    capacity = bool(args.streams or args.soak)
    if capacity:
        report["streams"], report["soak"] = [], []
    out = args.out or RESULTS_DIR / f"{stamp}.json"
    code = Path(tempfile.mkdtemp(prefix="aiproxy-bench-code-"))
    try:
        report["meta"].update(snapshot_code(code))
        log(
            f"measuring a copy of src/ at {report['meta']['git_head']}"
            f" (+{len(report['meta']['src_changes'])} uncommitted files)"
        )
        for mode in args.modes:
            if capacity:
                if args.streams:
                    report["streams"].append(run_streams(mode, layout, args, code))
                if args.soak:
                    report["soak"].append(run_soak(mode, layout, args, code))
                continue
            for workers in args.workers:
                result = run_mode(mode, choose_layout(args.pin, workers), args, stamp, code, workers)
                result["targets"] = check_targets(result)
                report["modes"].append(result)
    except KeyboardInterrupt:
        log("interrupted: everything started was stopped and cleaned up")
        return 130
    finally:
        shutil.rmtree(code, ignore_errors=True)
        if report["modes"] or report.get("streams") or report.get("soak"):
            out.write_text(json.dumps(report, indent=2, default=str))
    print_report(report)
    print(f"results: {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    ok = all(m["accounting"]["ok"] for m in report["modes"])
    ok = ok and all(r["ok"] for r in report.get("streams", []) + report.get("soak", []))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
