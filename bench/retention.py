"""Retention under load: the relay's retention job deletes a large backlog of old request logs
while the relay serves steady traffic; tail latency is compared with a quiet run of the same load.

For each storage mode (``sqlite``: SQLite + in-process state; ``pg``: PostgreSQL + Redis) this
migrates a fresh database and bulk-inserts ``--rows`` request logs 40 days old, each with a 1 KiB
captured body (what retention exists to remove), then runs the same closed-loop load twice
(``bench/loadgen.py``, claude messages through the relay at ``--concurrency``, ``--duration`` s):

1. quiet: the relay started with ``request_log_retention_days`` at 36500, so its retention job
   runs and finds nothing to delete;
2. retention: the relay restarted with the default 30 days; the load starts once the job has
   begun deleting, and a poller (the backlog's oldest id, an index lookup twice a second) records
   how much of the measured window the deletion covered.

It reports the p50/p99 latency of both runs, the p99 ratio (the issue's bound: at most 2x), the
deletion's rate, and checks that every request of both runs is in the request log exactly once.
The processes, pinning and clean-up are those of ``bench/run.py`` (``stack.py``, ``scenarios.py``).

    .venv/bin/python bench/retention.py [--rows 500000] [--duration 20] [--modes sqlite,pg]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import scenarios  # bench/scenarios.py: the load generator's phases
import stack as bench_stack  # bench/stack.py: the relay, the mock and their clean-up
from scenarios import Scenario
from stack import PYTHON, RESULTS_DIR, Backend, PgRedisBackend, Stack, log

BOUND = 2.0  # the bound on p99 with retention / p99 quiet
BODY = "x" * 1024
OLD_AGE = timedelta(days=40)
CHUNK = 20_000
LAST_RUN_KEY = "retention:last"  # billing/retention.py: the last run, in shared state


def _log_columns() -> tuple[list[str], dict[str, Any]]:
    """request_logs' columns (but id) and the value each takes unless a row sets it: the ORM's
    defaults are applied by SQLAlchemy, not by the database, so a bulk insert must name them all."""
    from aiproxy.store.models import RequestLog

    defaults: dict[str, Any] = {}
    for column in RequestLog.__table__.columns:
        if column.name == "id":
            continue
        default = column.default
        defaults[column.name] = default.arg if default is not None and not callable(default.arg) else None
    return list(defaults), defaults


def backlog_rows(count: int, *, sqlite: bool) -> Any:
    """The backlog in chunks of tuples, oldest first (ids 1..count follow created_at)."""
    columns, defaults = _log_columns()
    base = datetime.now(UTC) - OLD_AGE - timedelta(seconds=count)
    for start in range(0, count, CHUNK):
        rows = []
        for n in range(start, min(start + CHUNK, count)):
            at = base + timedelta(seconds=n)
            values = {
                **defaults,
                "request_id": f"backlog-{n:08d}",
                "user_id": 1,
                "api_key_id": 0,
                "platform": "claude-official",
                "model": "claude-sonnet-4-5",
                "path": "/claude/v1/messages",
                "input_tokens": 100,
                "output_tokens": 20,
                "total_tokens": 120,
                "request_body": BODY,
                "created_at": at.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else at,
            }
            rows.append(tuple(values[c] for c in columns))
        yield columns, rows


def fill_sqlite(path: Path, count: int) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA synchronous=OFF")
        for columns, rows in backlog_rows(count, sqlite=True):
            marks = ", ".join("?" * len(columns))
            conn.executemany(f"INSERT INTO request_logs ({', '.join(columns)}) VALUES ({marks})", rows)
            conn.commit()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


async def fill_pg(dsn: str, count: int) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        for columns, rows in backlog_rows(count, sqlite=False):
            await conn.copy_records_to_table("request_logs", records=rows, columns=columns)
        await conn.execute("VACUUM ANALYZE request_logs")  # what autovacuum would have done by now
    finally:
        await conn.close()


@dataclass
class Progress:
    """The backlog left over time, read from the oldest id left (the backlog has ids 1..rows)."""

    rows: int
    samples: list[tuple[float, int]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def left(self) -> int:
        return self.samples[-1][1] if self.samples else self.rows

    def started_at(self) -> float | None:
        return next((t for t, left in self.samples if left < self.rows), None)

    def finished_at(self) -> float | None:
        return next((t for t, left in self.samples if left == 0), None)


def _left(rows: int, oldest: int | None) -> int:
    return 0 if oldest is None or oldest > rows else rows - oldest + 1


def poll_sqlite(path: Path, progress: Progress) -> None:
    conn = sqlite3.connect(path, timeout=30)
    try:
        while not progress.stop.is_set():
            oldest = conn.execute("SELECT min(id) FROM request_logs").fetchone()[0]
            progress.samples.append((time.monotonic(), _left(progress.rows, oldest)))
            progress.stop.wait(0.5)
    finally:
        conn.close()


def poll_pg(dsn: str, progress: Progress) -> None:
    async def loop() -> None:
        import asyncpg

        conn = await asyncpg.connect(dsn)
        try:
            while not progress.stop.is_set():
                oldest = await conn.fetchval("SELECT min(id) FROM request_logs")
                progress.samples.append((time.monotonic(), _left(progress.rows, oldest)))
                await asyncio.sleep(0.5)
        finally:
            await conn.close()

    asyncio.run(loop())


def cli(stack: Stack, *args: str) -> None:
    done = subprocess.run(
        [PYTHON, "-m", "aiproxy", *args], env=stack.env(), cwd=stack.workdir, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"aiproxy {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")


def phase(stack: Stack, args: argparse.Namespace, name: str) -> dict[str, Any]:
    scenario = Scenario(f"retention_{name}", f"claude messages ({name})", "claude", args.concurrency)
    result = scenarios.run_loadgen(stack, scenario, direct=False, duration=args.duration, warmup=args.warmup)
    lat = result["latency_ms"] or {}
    log(
        f"    {name:9} {result['rps']:8.0f} req/s  p50 {lat.get('p50', 0):.3f} ms"
        f"  p99 {lat.get('p99', 0):.3f} ms  status {result['status']}  other-cpu {result['other_cpu_s']:.2f}s"
    )
    return result


def run_mode(mode: str, args: argparse.Namespace, layout: bench_stack.Layout, code: Path) -> dict[str, Any]:
    log(f"\n== mode {mode}: {bench_stack.MODE_TITLES[mode]} ({layout.describe()})")
    workdir = Path(tempfile.mkdtemp(prefix=f"aiproxy-bench-retention-{mode}-"))
    backend: Backend = PgRedisBackend() if mode == "pg" else Backend()
    stack = Stack(backend, layout, workdir, code=code)
    dsn = backend.env().get("AIPROXY_DATABASE_URL", "").replace("postgresql+asyncpg://", "postgresql://")
    sqlite_path = workdir / "data" / "aiproxy.db"
    try:
        (workdir / "data").mkdir()
        cli(stack, "migrate")
        cli(stack, "config", "set", "captcha_enabled", "false")
        cli(stack, "config", "set", "request_log_retention_days", "36500")
        started = time.monotonic()
        log(f"  filling request_logs with {args.rows:,} rows 40 days old (1 KiB body each) ...")
        if mode == "pg":
            asyncio.run(fill_pg(dsn, args.rows))
        else:
            fill_sqlite(sqlite_path, args.rows)
        log(f"    done in {time.monotonic() - started:.0f} s")
        stack.start_mock()
        stack.start_relay()
        stack.setup_admin()
        sent = 0

        # 1. Quiet: a fresh relay whose retention job finds nothing old enough.
        stack.stop_relay()
        stack.start_relay()
        time.sleep(7)  # past the job's first run (5 s after start): it deleted nothing
        scenarios.wait_quiet(args.quiet_wait, 0.15)
        quiet = phase(stack, args, "quiet")
        sent += quiet["sent_total"]

        # 2. Retention: restarted with 30 days; the load starts once the deletion has.
        stack.stop_relay()
        cli(stack, "config", "set", "request_log_retention_days", "30")
        if mode == "pg":  # the last run is kept in Redis: without it the job is due at once
            _drop_redis_key(backend, LAST_RUN_KEY)
        progress = Progress(args.rows)
        poller = threading.Thread(
            target=poll_pg if mode == "pg" else poll_sqlite,
            args=(dsn if mode == "pg" else sqlite_path, progress),
            daemon=True,
        )
        scenarios.wait_quiet(args.quiet_wait, 0.15)
        stack.start_relay()
        poller.start()
        deadline = time.monotonic() + 30
        while progress.started_at() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if progress.started_at() is None:
            raise RuntimeError("the retention job did not start deleting within 30 s")
        window_start = time.monotonic() + args.warmup
        deleting = phase(stack, args, "retention")
        window_end = time.monotonic()
        sent += deleting["sent_total"]
        left_at_end = progress.left()
        log(f"    backlog left when the window closed: {left_at_end:,} of {args.rows:,}")
        while progress.left() and time.monotonic() < window_end + args.finish_timeout:
            time.sleep(0.5)
        progress.stop.set()
        poller.join(5)

        accounting = verify(stack, sent)
        finished = progress.finished_at()
        began = progress.started_at() or 0.0
        overlap = (min(finished or window_end, window_end) - max(began, window_start)) / (
            window_end - window_start
        )
        p99 = (quiet["latency_ms"] or {}).get("p99", 0.0), (deleting["latency_ms"] or {}).get("p99", 0.0)
        return {
            "mode": mode,
            "title": bench_stack.MODE_TITLES[mode],
            "rows": args.rows,
            "quiet": quiet,
            "retention": deleting,
            "p99_ratio": p99[1] / p99[0] if p99[0] else None,
            "p50_ratio": _ratio(quiet, deleting, "p50"),
            "deletion": {
                "seconds": (finished - began) if finished else None,
                "rows_per_s": args.rows / (finished - began) if finished else None,
                "left_when_window_closed": left_at_end,
                "window_covered": max(0.0, min(1.0, overlap)),
                "samples": [(round(t - began, 2), left) for t, left in progress.samples],
            },
            "accounting": accounting,
        }
    finally:
        stack.stop()
        backend.cleanup()
        if args.keep:
            log(f"  kept the work dir: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _ratio(quiet: dict[str, Any], loaded: dict[str, Any], q: str) -> float | None:
    a, b = (quiet["latency_ms"] or {}).get(q), (loaded["latency_ms"] or {}).get(q)
    return b / a if a and b else None


def _drop_redis_key(backend: Backend, key: str) -> None:
    import redis

    prefix = backend.env()["AIPROXY_REDIS_PREFIX"]
    client = redis.Redis.from_url(bench_stack.REDIS_URL)
    try:
        client.delete(prefix + key)
    finally:
        client.close()


def verify(stack: Stack, sent: int, timeout: float = 60.0) -> dict[str, Any]:
    """Every request of both runs in the request log once: the key's rows (the backlog has none)."""
    deadline = time.monotonic() + timeout
    logged = 0
    while time.monotonic() < deadline:
        logged = int(stack.api("GET", f"/api/admin/logs?api_key_id={stack.key_id}&page_size=1")["total"])
        if logged >= sent:
            break
        time.sleep(0.5)
    count = stack.key_request_count()
    ok = logged == sent and count == sent
    log(f"  accounting {'OK' if ok else 'MISMATCH'}: sent {sent}, logged {logged}, key request_count {count}")
    return {"requests_sent": sent, "logged": logged, "api_key_request_count": count, "ok": ok}


def print_report(results: list[dict[str, Any]]) -> None:
    print(
        "\n| mode | backlog | quiet p50 / p99 (ms) | during retention p50 / p99 (ms) | p99 ratio | "
        "req/s quiet / during | deletion | window covered |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        q, d = r["quiet"], r["retention"]
        ql, dl = q["latency_ms"] or {}, d["latency_ms"] or {}
        deletion = r["deletion"]
        rate = f"{deletion['rows_per_s']:,.0f} rows/s" if deletion["rows_per_s"] else "unfinished"
        ratio = f"{r['p99_ratio']:.2f}x" if r["p99_ratio"] else "-"
        print(
            f"| {r['title']} | {r['rows']:,} | {ql.get('p50', 0):.2f} / {ql.get('p99', 0):.2f} "
            f"| {dl.get('p50', 0):.2f} / {dl.get('p99', 0):.2f} | {ratio} "
            f"| {q['rps']:.0f} / {d['rps']:.0f} | {rate} | {deletion['window_covered'] * 100:.0f}% |"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=500_000, help="old request logs to delete (500000)")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds per run (20)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unrecorded seconds before each run (1)")
    parser.add_argument("--concurrency", type=int, default=16, help="connections of the load (16)")
    parser.add_argument("--modes", default="sqlite,pg", help="sqlite, pg or both (default)")
    parser.add_argument("--pin", choices=("auto", "none"), default="auto", help="CPU pinning as bench/run.py")
    parser.add_argument("--quiet-wait", type=float, default=20.0, help="seconds to wait for a calm box (20)")
    parser.add_argument("--finish-timeout", type=float, default=600.0, help="seconds to wait for the rest")
    parser.add_argument("--keep", action="store_true", help="keep the work dirs")
    args = parser.parse_args(argv)
    args.modes = [m for m in args.modes.split(",") if m]
    if not set(args.modes) <= {"sqlite", "pg"}:
        parser.error("--modes takes sqlite and/or pg")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    RESULTS_DIR.mkdir(exist_ok=True)
    layout = bench_stack.choose_layout(args.pin)
    code = Path(tempfile.mkdtemp(prefix="aiproxy-bench-code-"))
    results: list[dict[str, Any]] = []
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    meta: dict[str, Any] = {"argv": sys.argv, "layout": layout.describe()}
    try:
        meta.update(bench_stack.snapshot_code(code))
        log(f"measuring a copy of src/ at {meta['git_head']} (+{len(meta['src_changes'])} uncommitted files)")
        for mode in args.modes:
            results.append(run_mode(mode, args, layout, code))
    except KeyboardInterrupt:
        log("interrupted: everything started was stopped and cleaned up")
        return 130
    finally:
        shutil.rmtree(code, ignore_errors=True)
        if results:
            out = RESULTS_DIR / f"{stamp}-retention.json"
            out.write_text(json.dumps({"meta": meta, "modes": results}, indent=2, default=str))
            log(f"results: {out}")
    print_report(results)
    within = all(r["p99_ratio"] is not None and r["p99_ratio"] <= BOUND for r in results)
    accounted = all(r["accounting"]["ok"] for r in results)
    print(
        f"\np99 within {BOUND:g}x of the quiet run: {'yes' if within else 'NO'}; "
        f"every request logged once: {'yes' if accounted else 'NO'}"
    )
    return 0 if within and accounted else 1


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        raise SystemExit(main())
