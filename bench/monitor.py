"""The monitor views (`/api/admin/monitor/*`) on a database holding 1 million request logs.

For each storage mode this fills a fresh database the way the relay would have written it over
~60 days: users, API keys, upstream accounts in every status, request logs (growing traffic, a busy
today), a usage record per billed request and the daily roll-up of those records. Then it starts
a real relay (`aiproxy serve`) on that database, logs in as the admin and times every monitor view
over HTTP, several rounds, interleaved. The budget is 100 ms per view.

- `sqlite`: a SQLite file and in-process shared state (the default deployment);
- `pg`: a fresh PostgreSQL database `aiproxy_bench_monitor_<random>` (dropped afterwards) and Redis
  (db 14, a unique key prefix, deleted afterwards) holding sticky bindings and slot leases.

    .venv/bin/python bench/monitor.py [--rows 1000000] [--rounds 20] [--modes sqlite,pg]
                                      [--bindings 5000] [--keep]

Needs PostgreSQL at postgresql://root@127.0.0.1:5432 (allowed to CREATE DATABASE) and Redis at
127.0.0.1:6379 for `pg`. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import hashlib
import itertools
import os
import random
import secrets
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis.asyncio as redis
from sqlalchemy import insert, text

from aiproxy import state_keys
from aiproxy.billing.usage_event import LOG_COLUMNS, USAGE_COLUMNS
from aiproxy.gateway.scheduler import binding_value, sticky_key
from aiproxy.store.db import Database
from aiproxy.store.models import Account, ApiKey, User
from aiproxy.store.state import RedisState

PG_ADMIN_DSN = "postgresql://root@127.0.0.1:5432/test"
PG_URL = "postgresql+asyncpg://root@127.0.0.1:5432/{db}"
REDIS_URL = "redis://127.0.0.1:6379/14"
ADMIN_PASSWORD = "bench-admin-pass"
BUDGET_MS = 100.0
VIEWS = ("", "/system", "/cache", "/mysql", "/database", "/accounts", "/users", "/today")
CHUNK = 50_000  # rows generated and inserted at a time

# (model, platform as logged: the serving account's type, USD per 1M input/output/cache-write/cache-read)
MODELS = (
    ("claude-sonnet-4-5", "claude-official", (3.0, 15.0, 3.75, 0.3)),
    ("claude-opus-4-1", "claude-official", (15.0, 75.0, 18.75, 1.5)),
    ("claude-haiku-4-5", "claude-console", (1.0, 5.0, 1.25, 0.1)),
    ("gpt-5", "openai", (1.25, 10.0, 0.0, 0.125)),
    ("gpt-4o", "openai", (2.5, 10.0, 0.0, 1.25)),
    ("gpt-5-codex", "openai-responses", (1.25, 10.0, 0.0, 0.125)),
    ("gemini-2.5-pro", "gemini", (1.25, 10.0, 0.0, 0.31)),
    ("gemini-2.5-flash", "gemini", (0.3, 2.5, 0.0, 0.075)),
)
MODEL_WEIGHTS = (30, 6, 8, 12, 5, 14, 8, 10)
PATHS = {
    "claude-official": "/claude/v1/messages",
    "claude-console": "/claude/v1/messages",
    "openai": "/openai/v1/chat/completions",
    "openai-responses": "/responses",
    "gemini": "/gemini/v1beta/models/gemini-2.5-pro:generateContent",
}
USER_AGENTS = (
    "claude-cli/2.0.14 (external, cli)",
    "codex_cli_rs/0.46.0 (Debian 12; x86_64) xterm-256color",
    "GeminiCLI/0.9.0 (linux; x64)",
    "Anthropic/Python 0.69.0",
    "OpenAI/Python 2.3.0",
)
CLIENT_TYPES = ("claude-code", "codex-cli", "gemini-cli", "", "")
# Errors as the relay logs them: (status, status code, message).
FAILURES = (
    ("error", 529, "upstream overloaded"),
    ("error", 502, "all accounts failed"),
    ("error", 429, "rate limited by upstream"),
    ("rejected", 429, "rate limit exceeded for this key"),
    ("rejected", 403, "model not allowed for this key"),
    ("rejected", 503, "no account available"),
)
# Accounts: (type, how many, statuses by share). Every status the relay knows shows up.
ACCOUNT_MIX = (
    ("claude-official", 24),
    ("claude-console", 6),
    ("openai", 10),
    ("openai-responses", 8),
    ("gemini", 8),
    ("bedrock", 2),
    ("azure-openai", 2),
)
STATUS_MIX = (
    ("valid", 0.78),
    ("rate_limited", 0.08),
    ("overloaded", 0.04),
    ("unavailable", 0.03),
    ("invalid", 0.04),
    ("token_expired", 0.03),
)

DAILY_COLUMNS = (
    "day",
    "user_id",
    "api_key_id",
    "model",
    "platform",
    "request_count",
    "input_tokens",
    "output_tokens",
    "cache_creation_tokens",
    "cache_read_tokens",
    "total_tokens",
    "cost",
)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- synthetic history ------------------------------------------------------------------------------


@dataclass
class Expected:
    """What the generator wrote for today (UTC), to check the views against."""

    requests: int = 0
    success: int = 0
    billed: int = 0
    total_tokens: int = 0
    cost: float = 0.0
    users: set[int] = field(default_factory=set)


@dataclass
class History:
    rows: int
    days: int
    today_share: float
    users: int
    now: datetime
    seed: int = 10
    expected: Expected = field(default_factory=Expected)
    daily: dict[tuple[date, int, int, str], list[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        # Each user has one to three keys; user activity is heavy-tailed (a few users send most).
        self.keys_of: list[list[int]] = []
        key_id = 0
        for _ in range(self.users):
            count = self.rng.choice((1, 1, 2, 3))
            self.keys_of.append(list(range(key_id + 1, key_id + count + 1)))
            key_id += count
        self.key_count = key_id
        weights = [1 / (rank + 1) ** 0.9 for rank in range(self.users)]
        self.user_cdf = list(itertools.accumulate(weights))
        self.accounts = self._accounts()
        self.accounts_by_platform: dict[str, list[int]] = {}
        for account_id, (kind, status, _until) in enumerate(self.accounts, start=1):
            if status == "valid":
                self.accounts_by_platform.setdefault(kind, []).append(account_id)

    def _accounts(self) -> list[tuple[str, str, datetime | None]]:
        accounts = []
        for kind, count in ACCOUNT_MIX:
            for _ in range(count):
                status = self.rng.choices([s for s, _ in STATUS_MIX], [w for _, w in STATUS_MIX])[0]
                until = None
                if status in ("rate_limited", "overloaded", "unavailable"):
                    until = self.now + timedelta(minutes=self.rng.randint(-30, 90))  # some ended
                accounts.append((kind, status, until))
        return accounts

    def day_counts(self) -> list[tuple[date, int]]:
        """Rows per UTC day, oldest first: traffic grows over the period; today is a busy day."""
        today = self.now.date()
        today_rows = int(self.rows * self.today_share)
        past = self.days - 1
        weights = [0.5 + i / max(1, past - 1) for i in range(past)]
        scale = (self.rows - today_rows) / sum(weights)
        counts = [int(w * scale) for w in weights]
        counts[-1] += self.rows - today_rows - sum(counts)
        days = [today - timedelta(days=past - i) for i in range(past)]
        return [*zip(days, counts, strict=True), (today, today_rows)]

    def user_rows(self) -> list[dict[str, Any]]:
        rows = []
        for uid in range(1, self.users + 1):
            # Registered over the last 120 days; a handful today.
            age = timedelta(days=self.rng.uniform(0, 120)) if uid % 400 else timedelta(minutes=uid % 50)
            created = self.now - age
            rows.append(
                {
                    "id": uid,
                    "username": f"bench-user-{uid}",
                    "email": f"user{uid}@example.com",
                    "password_hash": "!",  # never logs in
                    "role": "user",
                    "status": "disabled" if uid % 97 == 0 else "active",
                    "created_at": created,
                    "updated_at": created,
                }
            )
        return rows

    def key_rows(self) -> list[dict[str, Any]]:
        rows = []
        for index, keys in enumerate(self.keys_of):
            for key_id in keys:
                rows.append(
                    {
                        "id": key_id,
                        "user_id": index + 1,
                        "name": f"key-{key_id}",
                        "key_hash": hashlib.sha256(f"bench-{key_id}".encode()).hexdigest(),
                        "key_encrypted": "!",
                        "key_prefix": "sk-bench",
                    }
                )
        return rows

    def account_rows(self) -> list[dict[str, Any]]:
        rows = []
        for account_id, (kind, status, until) in enumerate(self.accounts, start=1):
            rows.append(
                {
                    "id": account_id,
                    "name": f"{kind}-{account_id}",
                    "type": kind,
                    "enabled": account_id % 23 != 0,
                    "status": status,
                    "status_reason": "" if status == "valid" else f"bench: {status}",
                    "rate_limited_until": until if status == "rate_limited" else None,
                    "overloaded_until": until if status in ("overloaded", "unavailable") else None,
                    "base_url": "http://127.0.0.1:9",  # the discard port: never reached
                    "region": "us-east-1" if kind == "bedrock" else "",
                    "max_concurrency": 5,
                }
            )
        return rows

    def _pick_user(self) -> int:
        return bisect.bisect_left(self.user_cdf, self.rng.random() * self.user_cdf[-1]) + 1

    def chunks(self) -> Iterator[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
        """(request-log rows, usage-record rows) in time order, CHUNK logs at a time."""
        logs: list[tuple[Any, ...]] = []
        usage: list[tuple[Any, ...]] = []
        today = self.now.date()
        for day, count in self.day_counts():
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            span = (self.now - start).total_seconds() - 1 if day == today else 86400.0
            for offset in sorted(self.rng.uniform(0, span) for _ in range(count)):
                log_row, usage_row = self._request(start + timedelta(seconds=offset), day == today)
                logs.append(log_row)
                if usage_row is not None:
                    usage.append(usage_row)
                if len(logs) >= CHUNK:
                    yield logs, usage
                    logs, usage = [], []
        if logs:
            yield logs, usage

    def _request(self, at: datetime, today: bool) -> tuple[tuple[Any, ...], tuple[Any, ...] | None]:
        rng = self.rng
        user_id = self._pick_user()
        key_id = rng.choice(self.keys_of[user_id - 1])
        model_index = rng.choices(range(len(MODELS)), MODEL_WEIGHTS)[0]
        model, platform, prices = MODELS[model_index]
        roll = rng.random()
        failure = None if roll < 0.94 else FAILURES[int((roll - 0.94) / 0.06 * len(FAILURES))]
        account_id = (
            None if failure and failure[0] == "rejected" else rng.choice(self.accounts_by_platform[platform])
        )
        stream = rng.random() < 0.7
        tokens = (0, 0, 0, 0)
        cost = (0.0, 0.0, 0.0, 0.0)
        if failure is None:
            cache_read = int(rng.lognormvariate(9, 1.2)) if platform.startswith("claude") else 0
            tokens = (
                int(rng.lognormvariate(7.5, 1.0)),
                int(rng.lognormvariate(6, 0.8)),
                int(rng.lognormvariate(6, 1.5))
                if platform.startswith("claude") and rng.random() < 0.3
                else 0,
                cache_read,
            )
            cost = tuple(t * p / 1e6 for t, p in zip(tokens, prices, strict=True))  # type: ignore[assignment]
        total = sum(tokens)
        total_cost = sum(cost)
        duration = int(rng.lognormvariate(8, 0.7)) if failure is None else int(rng.lognormvariate(5, 1))
        first_byte = int(duration * rng.uniform(0.05, 0.3)) if stream and failure is None else 0
        agent = rng.randrange(len(USER_AGENTS))
        request_id = f"req_{secrets.token_hex(12)}"
        status, status_code, message = failure or ("success", 200, "")
        log_row = (
            request_id,
            user_id,
            key_id,
            account_id,
            platform,
            model,
            model if account_id else "",
            "POST",
            PATHS[platform],
            stream,
            status,
            status_code,
            *tokens,
            total,
            total_cost,
            duration,
            first_byte,
            0 if failure is None else rng.randint(0, 3),
            f"10.0.{user_id % 256}.{key_id % 256}",
            USER_AGENTS[agent],
            CLIENT_TYPES[agent],
            secrets.token_hex(8) if stream else "",
            "",
            message,
            f'{{"user-agent": "{USER_AGENTS[agent]}", "content-type": "application/json", '
            f'"anthropic-version": "2023-06-01", "accept": "application/json"}}',
            "",
            "",
            at,
        )
        if today:
            self.expected.requests += 1
            self.expected.success += failure is None
            self.expected.users.add(user_id)
        if failure is not None:
            return log_row, None
        usage_row = (
            request_id,
            user_id,
            key_id,
            account_id,
            None,
            platform,
            model,
            *tokens,
            total,
            *cost,
            1.0,
            total_cost,
            at,
        )
        roll_up = self.daily.setdefault(
            (at.date(), user_id, key_id, model), [platform, 0, 0, 0, 0, 0, 0, 0.0]
        )
        roll_up[1] += 1
        for i, value in enumerate((*tokens, total), start=2):
            roll_up[i] += value
        roll_up[7] += total_cost
        if today:
            self.expected.billed += 1
            self.expected.total_tokens += total
            self.expected.cost += total_cost
        return log_row, usage_row

    def daily_rows(self) -> list[tuple[Any, ...]]:
        return [
            (day, user, key, model, *sums) for (day, user, key, model), sums in sorted(self.daily.items())
        ]


# -- filling a database -----------------------------------------------------------------------------


async def fill_small_tables(url: str, history: History) -> None:
    """Users, keys and accounts through the ORM's tables (column defaults applied as the app would)."""
    db = Database(url)
    try:
        async with db.transaction() as session:
            for model, rows in (
                (User, history.user_rows()),
                (ApiKey, history.key_rows()),
                (Account, history.account_rows()),
            ):
                await session.execute(insert(model.__table__), rows)
                if not db.is_sqlite:  # explicit ids: move the sequence past them
                    table = model.__tablename__
                    sequence = f"pg_get_serial_sequence('{table}', 'id')"
                    await session.execute(text(f"SELECT setval({sequence}, (SELECT max(id) FROM {table}))"))
    finally:
        await db.close()


def _sqlite_time(value: datetime) -> str:
    # How SQLAlchemy stores the relay's UTC timestamps in SQLite: comparisons are on this text.
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def fill_sqlite(path: Path, history: History) -> None:
    sqlite3.register_adapter(datetime, _sqlite_time)
    sqlite3.register_adapter(date, date.isoformat)
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA synchronous=OFF")
        for table, columns, rows in _big_tables(history):
            marks = ", ".join("?" * len(columns))
            conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)
            conn.commit()
    finally:
        conn.close()


async def fill_pg(dsn: str, history: History) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for table, columns, rows in _big_tables(history):
            await conn.copy_records_to_table(table, records=rows, columns=list(columns))
        # What autovacuum would have done over the 60 days: statistics and the visibility map.
        for table in ("request_logs", "usage_records", "daily_usage", "users", "api_keys", "accounts"):
            await conn.execute(f"VACUUM ANALYZE {table}")
    finally:
        await conn.close()


def _big_tables(history: History) -> Iterator[tuple[str, tuple[str, ...], list[tuple[Any, ...]]]]:
    written = 0
    for logs, usage in history.chunks():
        yield "request_logs", LOG_COLUMNS, logs
        yield "usage_records", USAGE_COLUMNS, usage
        written += len(logs)
        if written % 200_000 < CHUNK:
            log(f"    {written:,} request logs written")
    yield "daily_usage", DAILY_COLUMNS, history.daily_rows()


# -- the relay --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Relay:
    data_dir: Path
    extra_env: dict[str, str]
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIPROXY_")}
        env.update(
            AIPROXY_HOST="127.0.0.1",
            AIPROXY_PORT=str(self.port),
            AIPROXY_DATA_DIR=str(self.data_dir),
            AIPROXY_ADMIN_PASSWORD=ADMIN_PASSWORD,
            AIPROXY_LOG_LEVEL="warning",
            **self.extra_env,
        )
        return env

    def cli(self, *args: str) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "aiproxy", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            cwd=self.data_dir,
        )
        if result.returncode != 0:
            raise RuntimeError(f"aiproxy {' '.join(args)} failed:\n{result.stderr}")

    def start(self) -> None:
        self.port = free_port()
        out = open(self.data_dir / "relay.log", "ab")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "aiproxy", "serve"],
            env=self.env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=self.data_dir,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError((self.data_dir / "relay.log").read_text())
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("relay did not start within 60 s")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


def time_views(relay: Relay, rounds: int) -> tuple[dict[str, list[float]], dict[str, float], dict[str, Any]]:
    """({view: ms per measured round}, {view: ms of the first call}, the last answers)."""
    client = httpx.Client(base_url=f"http://127.0.0.1:{relay.port}", timeout=60)
    try:
        login = client.post("/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
        login.raise_for_status()
        client.headers["Authorization"] = f"Bearer {login.json()['data']['token']}"
        timings: dict[str, list[float]] = {view: [] for view in VIEWS}
        first: dict[str, float] = {}
        answers: dict[str, Any] = {}
        for round_ in range(rounds + 1):
            for view in VIEWS:
                started = time.perf_counter()
                response = client.get(f"/api/admin/monitor{view}")
                elapsed = (time.perf_counter() - started) * 1000
                body = response.json()
                if response.status_code != 200 or body.get("code") != 0:
                    raise RuntimeError(f"{view or '/'}: {response.status_code} {body}")
                answers[view] = body["data"]
                if round_ == 0:
                    first[view] = elapsed  # cold: first query plans, first CPU sample
                else:
                    timings[view].append(elapsed)
        return timings, first, answers
    finally:
        client.close()


def check_answers(answers: dict[str, Any], history: History, mode: str) -> list[str]:
    """Where the views disagree with what was written (empty when they agree)."""
    today, users, accounts = answers["/today"], answers["/users"], answers["/accounts"]
    expected = history.expected
    problems = []
    for name, got, want in (
        ("today requests", today["requests"]["total"], expected.requests),
        ("today success", today["requests"]["success"], expected.success),
        ("today request_count", today["request_count"], expected.billed),
        ("today total_tokens", today["total_tokens"], expected.total_tokens),
        ("users active", users["active"], len(expected.users)),
        ("users total", users["total"], history.users + 1),  # + the admin
        ("accounts total", accounts["total"], len(history.accounts)),
    ):
        if got != want:
            problems.append(f"{mode}: {name} is {got}, expected {want}")
    if abs(today["total_cost"] - expected.cost) > 1e-6 * max(1.0, expected.cost):
        problems.append(f"{mode}: today total_cost is {today['total_cost']}, expected {expected.cost}")
    return problems


# -- modes ------------------------------------------------------------------------------------------


async def _pg_admin(statement: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def seed_redis(prefix: str, history: History, *, bindings: int, slots: int) -> None:
    """What a busy relay keeps in Redis: sticky bindings (30 min) and slot leases of users and accounts."""
    state = RedisState.from_url(REDIS_URL, prefix=prefix, timeout=5)
    rng = random.Random(3)
    try:
        pipe = state.client.pipeline(transaction=False)
        for _ in range(bindings):
            key_id = rng.randint(1, history.key_count)
            account = rng.randint(1, len(history.accounts))
            pipe.set(
                state.prefix + sticky_key(key_id, secrets.token_hex(16)),
                binding_value(account, time.time()),
                ex=1800,
            )
        await pipe.execute()
        for n in range(slots):
            owner = (
                state_keys.user_slots(rng.randint(1, history.users))
                if n % 2
                else state_keys.account_slots(rng.randint(1, len(history.accounts)))
            )
            await state.acquire_slot(owner, f"bench-{n}", 0, 600)
    finally:
        await state.close()


async def drop_redis_keys(prefix: str) -> int:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=prefix + "*", count=1000)]
        for start in range(0, len(keys), 500):
            await client.delete(*keys[start : start + 500])
        return len(keys)
    finally:
        await client.aclose()


def run_mode(mode: str, args: argparse.Namespace, work: Path) -> tuple[dict[str, Any], list[str]]:
    data_dir = work / mode
    data_dir.mkdir()
    tag = secrets.token_hex(4)
    env: dict[str, str] = {}
    pg_name = ""
    if mode == "pg":
        pg_name = f"aiproxy_bench_monitor_{tag}"
        asyncio.run(_pg_admin(f'CREATE DATABASE "{pg_name}"'))
        env = {
            "AIPROXY_DATABASE_URL": PG_URL.format(db=pg_name),
            "AIPROXY_REDIS_URL": REDIS_URL,
            "AIPROXY_REDIS_PREFIX": f"aiproxy-bench-monitor-{tag}:",
        }
        log(f"{mode}: database {pg_name}, Redis db 14 prefix {env['AIPROXY_REDIS_PREFIX']}")
    relay = Relay(data_dir, env)
    try:
        relay.cli("migrate")
        relay.cli("config", "set", "captcha_enabled", "false")
        # Keep the whole synthetic history: the retention job must not delete it during the run.
        relay.cli("config", "set", "request_log_retention_days", str(args.days + 30))
        url = env.get("AIPROXY_DATABASE_URL") or f"sqlite+aiosqlite:///{data_dir / 'aiproxy.db'}"
        history = History(args.rows, args.days, args.today_share, args.users, datetime.now(UTC))
        started = time.monotonic()
        asyncio.run(fill_small_tables(url, history))
        if mode == "pg":
            asyncio.run(fill_pg(url.replace("+asyncpg", ""), history))
            asyncio.run(seed_redis(env["AIPROXY_REDIS_PREFIX"], history, bindings=args.bindings, slots=200))
        else:
            fill_sqlite(data_dir / "aiproxy.db", history)
        took = time.monotonic() - started
        log(f"{mode}: filled in {took:.0f} s ({len(history.daily):,} daily roll-up rows)")
        relay.start()
        try:
            timings, first, answers = time_views(relay, args.rounds)
        finally:
            relay.stop()
        size = answers["/database"].get("total_size", 0)
        result = {"timings": timings, "first": first, "size": size, "history": history}
        return result, check_answers(answers, history, mode)
    finally:
        relay.stop()
        if pg_name and not args.keep:
            asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'))
            log(f"{mode}: dropped {pg_name}")
        if mode == "pg" and not args.keep:
            log(f"{mode}: deleted {asyncio.run(drop_redis_keys(env['AIPROXY_REDIS_PREFIX']))} Redis keys")


def report(results: dict[str, dict[str, Any]], rounds: int) -> None:
    print()
    print(f"ms per view over HTTP, {rounds} rounds after one cold round (p50 / max; cold = first call)")
    print()
    print("| view | " + " | ".join(f"{mode} p50 | {mode} max | {mode} cold" for mode in results) + " |")
    print("|---|" + "---:|" * (3 * len(results)))
    worst = 0.0
    for view in VIEWS:
        cells = []
        for result in results.values():
            samples = result["timings"][view]
            worst = max(worst, max(samples))
            cells += [
                f"{statistics.median(samples):.1f}",
                f"{max(samples):.1f}",
                f"{result['first'][view]:.1f}",
            ]
        print(f"| `/api/admin/monitor{view}` | " + " | ".join(cells) + " |")
    print()
    for mode, result in results.items():
        history = result["history"]
        today = history.expected.requests
        print(
            f"{mode}: {history.rows:,} request logs over {history.days} days ({today:,} today), "
            f"{len(history.daily):,} daily roll-up rows, database {result['size'] / 2**20:,.0f} MiB"
        )
    print(f"worst {worst:.1f} ms: {'within' if worst <= BUDGET_MS else 'OVER'} the {BUDGET_MS:g} ms budget")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="request logs (default 1,000,000)")
    parser.add_argument("--days", type=int, default=60, help="days of history, today included (default 60)")
    parser.add_argument("--today-share", type=float, default=0.035, help="share of the rows logged today")
    parser.add_argument("--users", type=int, default=2000, help="users (default 2000)")
    # 35,000 requests today keep at most ~750 sessions alive at once (30-minute bindings): 5,000 is
    # generous; the cache view's walk grows with the number (--bindings 20000 for a busier relay).
    parser.add_argument("--bindings", type=int, default=5000, help="sticky bindings in Redis (pg mode)")
    parser.add_argument("--rounds", type=int, default=20, help="measured rounds over every view")
    parser.add_argument("--modes", default="sqlite,pg")
    parser.add_argument("--keep", action="store_true", help="keep the data dirs and the PostgreSQL database")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="aiproxy-bench-monitor-"))
    results: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    try:
        for mode in args.modes.split(","):
            results[mode], found = run_mode(mode, args, work)
            problems += found
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    report(results, args.rounds)
    for problem in problems:
        print(f"MISMATCH {problem}")
    if problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
