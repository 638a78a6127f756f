"""What a run prints: the tables per mode, the targets, the worker scaling and the capacity modes.

Everything here reads a result document (the JSON ``run.py`` writes), so ``--report FILE`` prints a
saved result, old ones included, exactly as a run does; ``--markdown`` gives the tables of
docs/performance.md. The targets are the issue's, for one relay worker with full accounting.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from scenarios import SCENARIOS, scenario_result

# The targets for one relay worker with full accounting (req/s at claude messages c=16).
TARGETS = {
    "sqlite": {"rps": 8000.0},
    "pg": {"rps": 5000.0},
    "added_p50_c1_ms": 0.25,
    "added_p99_c16_ms": 5.0,
    "added_p99_c64_ms": 20.0,
    "added_ttfb_ms": 0.3,
}
# (target, scenario, percentile of its added latency or TTFB)
_ADDED_TARGETS = (
    ("added_p50_c1_ms", "claude_c1", "p50"),
    ("added_p99_c16_ms", "claude_c16", "p99"),
    ("added_p99_c64_ms", "claude_c64", "p99"),
    ("added_ttfb_ms", "claude_stream_c1", "p50"),
)


def _f(value: float | None, fmt: str = ".3f") -> str:
    return "-" if value is None else format(value, fmt)


def check_targets(mode: dict[str, Any]) -> dict[str, Any]:
    sc = mode["scenarios"]
    rps = sc["claude_c16"]["relay"]["rps"]
    target_rps = TARGETS[mode["mode"]]["rps"]
    checks: dict[str, Any] = {"rps": {"measured": rps, "target": target_rps, "met": rps >= target_rps}}
    for name, scenario, q in _ADDED_TARGETS:
        measured = sc[scenario]["added_ms"][q] if scenario in sc else None
        target = TARGETS[name]
        checks[name] = {"measured": measured, "target": target, "met": (measured or 1e9) <= target}
    return checks


def _workers(mode: dict[str, Any]) -> int:
    return int(mode.get("workers", 1))  # results from before --workers had one


def _heading(mode: dict[str, Any]) -> str:
    workers = _workers(mode)
    if workers == 1:
        return str(mode["title"])
    return f"{mode['title']}, {workers} workers ({mode.get('layout', '')})"


def _errors(result: dict[str, Any]) -> int:
    return int(result["non_2xx"] + result["connection_errors"] + result.get("protocol_errors", 0))


def _target_line(name: str, check: dict[str, Any]) -> str:
    measured = check["measured"]
    shown = "-" if measured is None else (f"{measured:.0f}" if name == "rps" else f"{measured:.3f}")
    return f"{name} {shown} vs {check['target']:g} {'met' if check['met'] else 'MISSED'}"


def print_report(report: dict[str, Any]) -> None:
    meta = report["meta"]
    changes = (
        f" + uncommitted changes in {len(meta['src_changes'])} src files" if meta.get("src_changes") else ""
    )
    if not report["modes"]:  # a run of the capacity modes only
        print(f"\naiproxy capacity at {meta.get('git_head')}{changes} ({meta['layout']})\n")
    else:
        print(f"\naiproxy relay vs direct-to-mock at {meta.get('git_head')}{changes} ({meta['layout']})")
        print(f"measured {meta['duration_s']:g}s per phase after {meta['warmup_s']:g}s warmup\n")
    for mode in report["modes"]:
        print(f"== {mode['mode']}: {_heading(mode)}")
        head = (
            f"{'scenario':22} {'c':>3} {'direct r/s':>10} {'relay r/s':>10} {'direct p50/p99 ms':>18} "
            f"{'relay p50/p99 ms':>18} {'added p50/p99 ms':>17} {'relay µs/req':>12} {'errors':>7}"
        )
        print(head)
        print("-" * len(head))
        for pair in mode["scenarios"].values():
            d, r = pair["direct"], pair["relay"]
            metric = "ttfb_ms" if pair["stream"] else "latency_ms"
            name = pair.get("title", "")
            dm, rm, a = d[metric] or {}, r[metric] or {}, pair["added_ms"]
            print(
                f"{name:22} {pair['concurrency']:>3} {d['rps']:>10.0f} {r['rps']:>10.0f} "
                f"{_f(dm.get('p50')):>8} /{_f(dm.get('p99')):>8} "
                f"{_f(rm.get('p50')):>8} /{_f(rm.get('p99')):>8} "
                f"{_f(a['p50']):>7} /{_f(a['p99']):>8} {_f(pair['relay_cpu_us_per_req'], '.0f'):>12} "
                f"{_errors(d) + _errors(r):>7}"
            )
        acc = mode["accounting"]
        print(
            f"accounting: {acc['requests_sent']} relay requests sent, "
            f"{acc['logged_total']} in the request log, "
            f"key request_count {acc['api_key_request_count']} -> {'OK' if acc['ok'] else 'MISMATCH'}"
        )
        scope = "targets" if _workers(mode) == 1 else "targets (set for one worker)"
        print(f"{scope}: " + "; ".join(_target_line(k, v) for k, v in mode["targets"].items()))
        if "what_if" in mode:
            print_what_if(mode)
        if "profile" in mode:
            _print_profile(mode["profile"]["sampled"])
        print()
    print_scaling(report)
    for result in report.get("streams", []):
        print_streams(result)
    for result in report.get("soak", []):
        print_soak(result)


def _print_profile(sampled: dict[str, Any]) -> None:
    shares = ", ".join(
        f"{k} {v['share'] * 100:.0f}%" for k, v in list(sampled["self_by_package"].items())[:7]
    )
    print(f"relay CPU by package (sampled, {sampled['file']}): {shares}")
    inclusive = ", ".join(
        f"{r['function'].split('/')[-1]} {r['share'] * 100:.0f}%"
        for r in sampled["top_inclusive_aiproxy"][:8]
    )
    print(f"heaviest aiproxy/sqlalchemy entries (inclusive): {inclusive}")
    stalls = sampled["stalls"]
    print(
        f"event-loop stalls: max {stalls['max_ms']:.1f} ms, timer ticks late >=5 ms "
        f"{stalls['ticks_late_over_ms']['5']}, >=20 ms {stalls['ticks_late_over_ms']['20']} "
        f"of {stalls['ticks']}; recorder {sampled['recorder']}"
    )
    if sampled.get("gc"):
        gcs = sampled["gc"]
        print(
            f"gc pauses (gen0/1/2): count {gcs['collections']}, "
            f"max ms {[round(x, 1) for x in gcs['max_ms']]}, "
            f"total ms {[round(x) for x in gcs['total_ms']]}"
        )


def print_what_if(mode: dict[str, Any]) -> None:
    print("what-if (only the gc.freeze() row keeps full accounting; the others only price each part)")
    head = (
        f"{'variant':46} {'c=1 p50 ms':>10} {'c=1 µs/req':>10} {'c=16 r/s':>9} {'c=16 p99 ms':>11} "
        f"{'c=16 µs/req':>11} {'c=64 r/s':>9} {'c=64 p99 ms':>11}"
    )
    print(head)
    print("-" * len(head))
    rows = [("full accounting (the table above)", mode["scenarios"])]
    rows += [(title, runs) for title, runs in mode["what_if"].items()]
    for title, runs in rows:
        c1, c16, c64 = runs["claude_c1"], runs["claude_c16"], runs.get("claude_c64")
        if "relay" in c1:  # a scenario pair from the main table
            c1, c16, c64 = c1["relay"], c16["relay"], c64["relay"] if c64 else None
        tail = f" {c64['rps']:>9.0f} {c64['latency_ms']['p99']:>11.3f}" if c64 else ""
        print(
            f"{title:46} {c1['latency_ms']['p50']:>10.3f} {c1['cpu'].get('relay_us_per_req') or 0:>10.0f} "
            f"{c16['rps']:>9.0f} {c16['latency_ms']['p99']:>11.3f} "
            f"{c16['cpu'].get('relay_us_per_req') or 0:>11.0f}{tail}"
        )


# -- worker scaling --------------------------------------------------------------------------------

SCALING_SCENARIOS = ("claude_c16", "claude_c64", "openai_c16")


def scaling_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per mode, worker count and throughput scenario, when a mode ran with several worker
    counts: relay req/s, relay CPU per request summed over its processes, and how busy each
    process was (CPU seconds / measured seconds; the master first)."""
    counts: dict[str, set[int]] = {}
    for mode in report["modes"]:
        counts.setdefault(mode["mode"], set()).add(_workers(mode))
    rows = []
    for mode in report["modes"]:
        if len(counts[mode["mode"]]) < 2:
            continue
        for name in SCALING_SCENARIOS:
            if name not in mode["scenarios"]:
                continue
            relay = mode["scenarios"][name]["relay"]
            seconds = relay["duration_s"] or 1.0
            parts = relay.get("cpu_s_parts", {}).get("relay")
            busy = (
                [v / seconds for v in parts.values()] if parts else [relay["cpu_s"].get("relay", 0) / seconds]
            )
            rows.append(
                {
                    "mode": mode["mode"],
                    "workers": _workers(mode),
                    "scenario": f"{mode['scenarios'][name]['title']} c={relay['concurrency']}",
                    "rps": relay["rps"],
                    "relay_us_per_req": relay["cpu"].get("relay_us_per_req"),
                    "relay_cpu_busy": busy,
                }
            )
    return rows


def print_scaling(report: dict[str, Any]) -> None:
    rows = scaling_rows(report)
    if not rows:
        return
    print("== scaling with workers (relay phases; CPU summed over the relay's processes)")
    head = (
        f"{'mode':6} {'workers':>7} {'scenario':26} {'relay r/s':>10} {'relay µs/req':>12}  busy per process"
    )
    print(head)
    print("-" * len(head))
    for row in rows:
        busy = " ".join(f"{b:.2f}" for b in row["relay_cpu_busy"])
        print(
            f"{row['mode']:6} {row['workers']:>7} {row['scenario']:26} {row['rps']:>10.0f} "
            f"{_f(row['relay_us_per_req'], '.0f'):>12}  {busy}"
        )
    print("(busy = CPU seconds / measured seconds per process, the uvicorn master first)\n")


# -- the capacity modes ----------------------------------------------------------------------------


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**20:.0f} MiB"


def print_streams(result: dict[str, Any]) -> None:
    gen, rss = result["streamgen"], result["relay_rss"]
    print(
        f"== streams: {result['mode']} ({result['title']}), {result['workers']} worker(s): "
        f"{result['streams']} concurrent claude streams, each ~{result['hold_s']:g} s "
        f"({result['frames']} events, {result['delay_ms']} ms apart)"
    )
    if gen["time_to_open_all_s"] is not None:
        opening = f"all open after {gen['time_to_open_all_s']:.1f} s"
    else:
        opening = f"the last one opened after {_f(gen.get('time_to_last_open_s'), '.1f')} s"
    short = "" if gen["peak_open"] >= result["streams"] else " (not all at once)"
    errors = f" {gen['errors']}" if gen["errors"] else ""
    print(
        f"opened {gen['opened']}, completed {gen['completed']}, errored {gen['errored']}{errors}; "
        f"{opening}; at most {gen['peak_open']} open at once{short}"
    )
    per_stream = (rss["peak"] - rss["start"]) / result["streams"] if result["streams"] else 0
    print(
        f"relay RSS start {_mb(rss['start'])}, peak {_mb(rss['peak'])}, end {_mb(rss['end'])} "
        f"(~{per_stream / 1024:.0f} KiB per stream); relay fds peak {result['relay_fds_peak']}; "
        f"RLIMIT_NOFILE {result['fd_limit']}; mock RSS peak {_mb(result.get('mock_rss_peak'))}"
    )
    if not result.get("fd_limit_enough", True):
        print(
            f"RLIMIT_NOFILE {result['fd_limit']} is below the relay's need for {result['streams']} streams "
            "(2 per stream + its own) and could not be raised"
        )
    check, acc = result["per_stream_log"], result["accounting"]
    print(
        f"request log: {acc['logged_total']} rows for {acc['requests_sent']} "
        f"requests; {check.get('streams_logged', '-')} of the {result['streams']} streams in it, "
        f"{check['found_once']} of the completed ones once with status success, "
        f"missing {check['missing']}, duplicated {check['duplicated']}, not success {check['not_success']}"
        f" -> {'OK' if result['ok'] else 'FAILED'}"
    )
    if result.get("relay_errors"):
        print("relay log errors (first lines):")
        for line in result["relay_errors"][:10]:
            print(f"  {line}")
    met = result.get("target_met")
    verdict = "not applicable (fewer streams)" if met is None else ("met" if met else "MISSED")
    print(f"target (10,000 streams in <1 GB RSS, every one completed and logged): {verdict}")
    print()


def print_soak(result: dict[str, Any]) -> None:
    rss = result["rss"]
    rate = f"paced to {result['rate']:g} req/s" if result["rate"] else "closed loop"
    print(
        f"== soak: {result['mode']} ({result['title']}), {result['workers']} worker(s): "
        f"{result['minutes']:g} min at c={result['concurrency']} ({result['mix']}), {rate}"
    )
    print(
        f"{result['requests']} requests, {result['rps']:.0f} req/s, errors {result['errors']}; "
        f"relay {_f(result.get('relay_us_per_req'), '.0f')} µs/req"
    )
    print(
        f"relay RSS first {_mb(rss['first'])}, after warm-up ({rss['warmup_s']:g} s) {_mb(rss['baseline'])}, "
        f"last {_mb(rss['last'])}, min {_mb(rss['min'])}, max {_mb(rss['max'])}; drift "
        f"{rss['drift'] * 100:+.1f}%, largest deviation {rss['max_deviation'] * 100:+.1f}% "
        f"({rss['samples']} samples every {rss['interval_s']:g} s) -> {'PASS' if rss['pass'] else 'FAIL'} "
        f"(±{rss['tolerance'] * 100:.0f}%)"
    )
    acc = result["accounting"]
    print(
        f"accounting: {acc['requests_sent']} sent, {acc['logged_total']} in the request log, "
        f"key request_count {acc['api_key_request_count']} -> {'OK' if acc['ok'] else 'MISMATCH'}"
    )
    print()


# -- Markdown --------------------------------------------------------------------------------------


def print_markdown(report: dict[str, Any]) -> None:
    """The tables of docs/performance.md."""
    meta = report["meta"]
    print(
        f"Commit `{meta.get('git_head')}`, {meta['duration_s']:g} s phases "
        f"after {meta['warmup_s']:g} s warmup,"
    )
    print(f"{meta.get('repeat', 1)} repetition(s), {meta['layout']}.\n")
    for mode in report["modes"]:
        print(f"### {_heading(mode)} (`{mode['mode']}`)\n")
        print(
            "| scenario | c | direct req/s | relay req/s | direct p50 / p99 ms | relay p50 / p99 ms "
            "| added p50 / p99 ms | relay CPU µs/req |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for pair in mode["scenarios"].values():
            d, r, a = pair["direct"], pair["relay"], pair["added_ms"]
            metric = "ttfb_ms" if pair["stream"] else "latency_ms"
            title = pair["title"] + (" — TTFB" if pair["stream"] and "TTFB" not in pair["title"] else "")
            print(
                f"| {title} | {pair['concurrency']} | {d['rps']:.0f} | {r['rps']:.0f} "
                f"| {d[metric]['p50']:.3f} / {d[metric]['p99']:.3f} "
                f"| {r[metric]['p50']:.3f} / {r[metric]['p99']:.3f} "
                f"| {_f(a['p50'])} / {_f(a['p99'])} | {_f(pair['relay_cpu_us_per_req'], '.0f')} |"
            )
        acc = mode["accounting"]
        print(
            f"\nAccounting: {acc['requests_sent']} requests sent to the relay, {acc['logged_total']} in the "
            f"request log, key `request_count` {acc['api_key_request_count']}: "
            f"{'complete' if acc['ok'] else 'MISMATCH'}.\n"
        )
        print("| target | measured | target | met |")
        print("|---|---:|---:|---|")
        for name, check in mode["targets"].items():
            measured = check["measured"]
            shown = "-" if measured is None else (f"{measured:.0f}" if name == "rps" else f"{measured:.3f}")
            print(f"| {name} | {shown} | {check['target']:g} | {'yes' if check['met'] else 'no'} |")
        print()
        if "what_if" in mode:
            _markdown_what_if(mode)
    rows = scaling_rows(report)
    if rows:
        print("| mode | workers | scenario | relay req/s | relay CPU µs/req | busy per process |")
        print("|---|---:|---|---:|---:|---|")
        for row in rows:
            busy = " / ".join(f"{b:.2f}" for b in row["relay_cpu_busy"])
            print(
                f"| {row['mode']} | {row['workers']} | {row['scenario']} | {row['rps']:.0f} "
                f"| {_f(row['relay_us_per_req'], '.0f')} | {busy} |"
            )
        print()
    for result in report.get("streams", []):
        print_streams(result)
    for result in report.get("soak", []):
        print_soak(result)


def _markdown_what_if(mode: dict[str, Any]) -> None:
    print(
        "| variant | c=1 p50 ms | c=1 µs/req | c=16 req/s "
        "| c=16 p99 ms | c=16 µs/req | c=64 req/s | c=64 p99 ms |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    rows = [("full accounting", mode["scenarios"]), *mode["what_if"].items()]
    for title, runs in rows:
        c1, c16, c64 = runs["claude_c1"], runs["claude_c16"], runs.get("claude_c64")
        if "relay" in c1:
            c1, c16, c64 = c1["relay"], c16["relay"], c64["relay"] if c64 else None
        tail = f"| {c64['rps']:.0f} | {c64['latency_ms']['p99']:.3f} |" if c64 else "| - | - |"
        print(
            f"| {title} | {c1['latency_ms']['p50']:.3f} "
            f"| {c1['cpu'].get('relay_us_per_req') or 0:.0f} "
            f"| {c16['rps']:.0f} | {c16['latency_ms']['p99']:.3f} "
            f"| {c16['cpu'].get('relay_us_per_req') or 0:.0f} {tail}"
        )
    print()


def reprint(path: Path, *, markdown: bool = False) -> int:
    """Print the tables of a saved result (re-picking the shown repetition with the current rule and
    checking the current targets)."""
    report = json.loads(path.read_text())
    for mode in report["modes"]:
        for name, pair in mode["scenarios"].items():
            if pair.get("repetitions"):
                scenario = next(s for s in SCENARIOS if s.name == name)
                mode["scenarios"][name] = scenario_result(scenario, pair["repetitions"])
        mode["targets"] = check_targets(mode)
    if markdown:
        print_markdown(report)
    else:
        print_report(report)
    return 0
