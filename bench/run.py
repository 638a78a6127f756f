"""Relay vs direct-to-mock benchmark, both measured in the same run.

For each storage mode (``sqlite``: SQLite + in-process state; ``pg``: PostgreSQL + Redis) this starts
the fake vendor upstream and one relay worker on a fresh data dir, configures the relay through the
admin HTTP API (an Anthropic and an OpenAI account pointing at the mock, one unlimited user key),
then runs each scenario twice back to back with ``bench/loadgen.py``: straight at the mock
("direct") and through the relay. It reports requests/s, latency percentiles, the latency the relay
adds, stream time-to-first-byte and the relay's CPU time per request; waits for the relay's usage
recorder to flush and checks that the request log holds exactly one row per request sent.

    .venv/bin/python bench/run.py [--duration 10] [--modes sqlite,pg] [--quick] [--profile]

Everything it starts is stopped again, the PostgreSQL database it creates is dropped and its Redis
keys are deleted. Results go to ``bench/results/<timestamp>.json`` (git-ignored).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import pstats
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
LOADGEN = BENCH_DIR / "loadgen.py"
PYTHON = sys.executable

PG_ADMIN_DSN = "postgresql://root@127.0.0.1:5432/postgres"
PG_URL = "postgresql+asyncpg://root@127.0.0.1:5432/{db}"
REDIS_URL = "redis://127.0.0.1:6379/14"

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

# The issue's targets for one relay worker with full accounting.
TARGETS = {
    "sqlite": {"rps": 5000.0},
    "pg": {"rps": 3000.0},
    "added_p50_c1_ms": 0.3,
    "added_p99_c16_ms": 5.0,
    "added_ttfb_ms": 0.5,
}
MODE_TITLES = {"sqlite": "SQLite + in-process state", "pg": "PostgreSQL + Redis"}


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


# -- small helpers ---------------------------------------------------------------------------------


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_json(
    method: str, url: str, body: Any = None, token: str | None = None, timeout: float = 30.0
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        payload = exc.read()
        with contextlib.suppress(ValueError):
            return exc.code, json.loads(payload)
        return exc.code, payload.decode("utf-8", "replace")


def pin_to(cores: set[int] | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` pinning the child (and every thread it will start) to ``cores``."""
    if not cores:
        return None

    def pin() -> None:
        os.sched_setaffinity(0, cores)

    return pin


class Proc:
    """A child process with its output in a log file; stopped with SIGINT, then SIGKILL."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], cwd: Path, cores: set[int] | None
    ) -> None:
        self.name = name
        self.log_path = cwd / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=pin_to(cores),
            start_new_session=True,  # a Ctrl-C in the terminal reaches only run.py, which stops us
        )
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"  {self.name} (pid {self.pid}) did not stop in {timeout:.0f}s: killing it")
                with contextlib.suppress(ProcessLookupError):
                    self.popen.kill()
                self.popen.wait(10)
        self._log.close()
        return self.popen.returncode


def wait_http(proc: Proc, url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{proc.name} did not answer {url} within {timeout:.0f}s:\n{proc.tail()}")


# -- the storage backends --------------------------------------------------------------------------


class Backend:
    """What a mode adds to the relay's environment, and the clean-up afterwards."""

    mode = "sqlite"

    def env(self) -> dict[str, str]:
        return {}

    def extra_watch(self) -> dict[str, int]:
        return {}

    def cleanup(self) -> None:
        pass


class PgRedisBackend(Backend):
    mode = "pg"

    def __init__(self) -> None:
        self.tag = f"{os.getpid()}_{secrets.token_hex(4)}"
        self.db = f"aiproxy_bench_{self.tag}"
        self.prefix = f"aiproxy-bench-{self.tag}:"
        self.created = False
        self._redis_pid = _find_pid("redis-server")
        asyncio.run(self._sql(f'CREATE DATABASE "{self.db}"'))
        self.created = True
        log(f"  created PostgreSQL database {self.db}; Redis db 14 with prefix {self.prefix}")

    @staticmethod
    async def _sql(statement: str, *args: Any) -> list[Any]:
        import asyncpg

        conn = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            return list(await conn.fetch(statement, *args))
        finally:
            await conn.close()

    def env(self) -> dict[str, str]:
        return {
            "AIPROXY_DATABASE_URL": PG_URL.format(db=self.db),
            "AIPROXY_REDIS_URL": REDIS_URL,
            "AIPROXY_REDIS_PREFIX": self.prefix,
        }

    def extra_watch(self) -> dict[str, int]:
        """The PostgreSQL backends serving the bench database (now) and the Redis server."""
        rows = asyncio.run(
            self._sql(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", self.db
            )
        )
        watch = {f"pg{i}": int(row["pid"]) for i, row in enumerate(rows)}
        if self._redis_pid:
            watch["redis"] = self._redis_pid
        return watch

    def cleanup(self) -> None:
        if self.created:
            try:
                asyncio.run(self._sql(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)'))
                log(f"  dropped PostgreSQL database {self.db}")
                self.created = False
            except Exception as exc:
                log(f"  could not drop PostgreSQL database {self.db}: {exc}")
        try:
            import redis

            client = redis.Redis.from_url(REDIS_URL)
            try:
                keys = list(client.scan_iter(match=self.prefix + "*", count=1000))
                for start in range(0, len(keys), 500):
                    client.delete(*keys[start : start + 500])
                log(f"  deleted {len(keys)} Redis keys with prefix {self.prefix}")
            finally:
                client.close()
        except Exception as exc:
            log(f"  could not clean Redis keys {self.prefix}*: {exc}")


def _find_pid(name: str) -> int | None:
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] == name:
            return int(proc.pid)
    return None


# -- one mode: mock + relay + admin setup ----------------------------------------------------------


@dataclass
class Layout:
    relay: set[int] | None
    mock: set[int] | None
    loadgen: set[int] | None

    def describe(self) -> str:
        if not (self.relay or self.mock or self.loadgen):
            return "no pinning (the kernel schedules everything on all cores)"

        def fmt(cores: set[int] | None) -> str:
            return "cpu" + ",".join(map(str, sorted(cores))) if cores else "any cpu"

        return f"relay on {fmt(self.relay)}; mock on {fmt(self.mock)}; loadgen on {fmt(self.loadgen)}"


def choose_layout(pin: str) -> Layout:
    cores = sorted(os.sched_getaffinity(0))
    if pin == "none" or len(cores) < 2:
        return Layout(None, None, None)
    # The relay gets a core of its own ("one relay worker"); the mock and the load generator,
    # which together cost well under half the relay's CPU per request, share the other.
    return Layout({cores[0]}, {cores[1]}, {cores[1]})


@dataclass
class Stack:
    backend: Backend
    layout: Layout
    workdir: Path
    mock: Proc | None = None
    relay: Proc | None = None
    mock_port: int = 0
    relay_port: int = 0
    token: str = ""
    api_key: str = ""
    key_id: int = 0
    admin_id: int = 0
    user_max_concurrency: int = 10_000
    accounts_per_family: int = 1
    code: Path | None = None  # the snapshot of src/ every child imports aiproxy from
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(16))

    @property
    def relay_url(self) -> str:
        return f"http://127.0.0.1:{self.relay_port}"

    @property
    def mock_url(self) -> str:
        return f"http://127.0.0.1:{self.mock_port}"

    def env(self) -> dict[str, str]:
        # Nothing from the caller's AIPROXY_* settings (or a .env: cwd is the work dir) leaks in.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIPROXY_")}
        env.update(
            {
                "AIPROXY_DATA_DIR": str(self.workdir / "data"),
                "AIPROXY_ADMIN_PASSWORD": self.admin_password,
                "AIPROXY_LOG_LEVEL": "warning",
                "AIPROXY_HOST": "127.0.0.1",
                "PYTHONUNBUFFERED": "1",
            }
        )
        if self.code is not None:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.code), env.get("PYTHONPATH")]))
        env.update(self.backend.env())
        return env

    def configure(self) -> None:
        argv = [PYTHON, "-m", "aiproxy", "config", "set", "captcha_enabled", "false"]
        done = subprocess.run(argv, env=self.env(), cwd=self.workdir, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"aiproxy config set failed:\n{done.stdout}\n{done.stderr}")

    def start_mock(self) -> None:
        for _ in range(5):
            self.mock_port = free_port()
            argv = [PYTHON, "-m", "aiproxy", "mock-upstream", "--port", str(self.mock_port)]
            self.mock = Proc("mock", argv, self.env(), self.workdir, self.layout.mock)
            try:
                wait_http(self.mock, f"{self.mock_url}/__mock/health", timeout=20)
                return
            except RuntimeError:  # lost the port to someone else: try another
                self.mock.stop(5)
        raise RuntimeError("could not start the mock upstream")

    def start_relay(self, *, launcher: list[str] | None = None, name: str = "relay") -> None:
        """Start the relay; ``launcher`` replaces ``-m aiproxy`` (cProfile, the sampling wrapper)."""
        for _ in range(5):
            self.relay_port = free_port()
            argv = [PYTHON, *(launcher or ["-m", "aiproxy"]), "serve", "--port", str(self.relay_port)]
            self.relay = Proc(name, argv, self.env(), self.workdir, self.layout.relay)
            try:
                wait_http(self.relay, f"{self.relay_url}/health", timeout=60)
                return
            except RuntimeError as exc:
                if "address already in use" not in str(exc):
                    raise
                self.relay.stop(5)
        raise RuntimeError("could not start the relay")

    def stop_relay(self) -> None:
        if self.relay is not None:
            code = self.relay.stop(60)
            if code not in (0, None):
                log(f"  relay exited with {code}:\n{self.relay.tail(10)}")
            self.relay = None

    def api(self, method: str, path: str, body: Any = None) -> Any:
        status, payload = http_json(method, self.relay_url + path, body, self.token)
        if status >= 300 or not isinstance(payload, dict) or payload.get("code") not in (0, None):
            raise RuntimeError(f"{method} {path} answered {status}: {payload}")
        return payload.get("data")

    def setup_admin(self) -> None:
        status, payload = http_json(
            "POST", self.relay_url + "/api/auth/login", {"username": "admin", "password": self.admin_password}
        )
        if status != 200:
            raise RuntimeError(f"admin login failed ({status}): {payload}")
        self.token = payload["data"]["token"]
        self.admin_id = payload["data"]["user"]["id"]
        for name, kind in (("bench-claude", "claude-official"), ("bench-openai", "openai")):
            for n in range(self.accounts_per_family):
                self.api(
                    "POST",
                    "/api/admin/accounts",
                    {
                        "name": name if n == 0 else f"{name}-{n + 1}",
                        "type": kind,
                        "api_key": "bench",
                        "base_url": self.mock_url,
                    },
                )
        created = self.api("POST", "/api/api-keys", {"name": "bench"})
        self.api_key, self.key_id = created["key"], created["id"]
        self.api("PUT", f"/api/admin/api-keys/{self.key_id}", {"rate_limit": 0})  # 0 = unlimited
        # The user concurrency limit stays on (high), so every request takes and frees a slot.
        self.set_user_concurrency(self.user_max_concurrency)

    def set_user_concurrency(self, limit: int) -> None:
        self.api("PUT", f"/api/admin/users/{self.admin_id}", {"max_concurrency": limit})

    def logged_total(self) -> int:
        return int(self.api("GET", "/api/admin/logs?page_size=1")["total"])

    def key_request_count(self) -> int:
        return int(self.api("GET", f"/api/admin/api-keys/{self.key_id}")["request_count"])

    def stop(self) -> None:
        self.stop_relay()
        if self.mock is not None:
            self.mock.stop(10)
            self.mock = None


# -- running the load generator --------------------------------------------------------------------


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


def run_loadgen(
    stack: Stack, scenario: Scenario, *, direct: bool, duration: float, warmup: float
) -> dict[str, Any]:
    url, headers, body = request_for(stack, scenario, direct=direct)
    body_file = stack.workdir / f"body-{scenario.name}.json"
    body_file.write_bytes(body)
    watch = {"mock": stack.mock.pid if stack.mock else 0}
    if stack.relay is not None:
        watch["relay"] = stack.relay.pid
    if not direct:
        watch.update(stack.backend.extra_watch())
    argv = [PYTHON, str(LOADGEN), url, "-c", str(scenario.concurrency), "-d", str(duration)]
    argv += ["-w", str(warmup), "--body-file", str(body_file), "--json"]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    for name, pid in watch.items():
        argv += ["--watch", f"{name}={pid}"]
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
    result: dict[str, Any] = json.loads(done.stdout)
    cpu = result["cpu_s"]
    ours = sum(v for k, v in cpu.items() if k != "box_busy_fraction")
    box = cpu.get("box_busy_fraction", 0.0) * (os.cpu_count() or 1) * result["duration_s"]
    result["other_cpu_s"] = max(0.0, box - ours)  # everything else on the box: noise indicator
    stores = [v for k, v in cpu.items() if k.startswith("pg") or k == "redis"]
    if stores and result["requests"]:
        result["cpu"]["stores_us_per_req"] = sum(stores) / result["requests"] * 1e6
    return result


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


# -- profiling -------------------------------------------------------------------------------------


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
    stack.start_relay(
        launcher=[str(BENCH_DIR / "profile_serve.py"), "--out", str(sampled_out), "--"], name="relay-sampled"
    )
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
    variants = [("full accounting + gc.freeze() after start-up", "", False, True)]
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


# -- a whole mode ----------------------------------------------------------------------------------


@contextlib.contextmanager
def mode_stack(mode: str, layout: Layout, args: argparse.Namespace, code: Path) -> Iterator[Stack]:
    workdir = Path(tempfile.mkdtemp(prefix=f"aiproxy-bench-{mode}-"))
    backend: Backend = PgRedisBackend() if mode == "pg" else Backend()
    stack = Stack(
        backend,
        layout,
        workdir,
        user_max_concurrency=args.user_max_concurrency,
        accounts_per_family=args.accounts_per_family,
        code=code,
    )
    try:
        yield stack
    finally:
        stack.stop()
        backend.cleanup()
        if args.keep:
            log(f"  kept the work dir (logs, data): {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def run_mode(mode: str, layout: Layout, args: argparse.Namespace, stamp: str, code: Path) -> dict[str, Any]:
    log(f"\n== mode {mode}: {MODE_TITLES[mode]} ({layout.describe()})")
    with mode_stack(mode, layout, args, code) as stack:
        stack.configure()
        stack.start_mock()
        stack.start_relay()
        stack.setup_admin()
        log(
            f"  mock on :{stack.mock_port} (pid {stack.mock.pid}), "
            f"relay on :{stack.relay_port} (pid {stack.relay.pid})"
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
            "loadavg_before": load_before,
            "scenarios": scenarios,
            "accounting": accounting,
        }
        if args.profile and mode in args.profile_modes:
            result["profile"] = profile_relay(stack, args, stamp)
        if args.what_if:
            result["what_if"] = what_if(stack, args)
        return result


# -- report ----------------------------------------------------------------------------------------


def _f(value: float | None, fmt: str = ".3f") -> str:
    return "-" if value is None else format(value, fmt)


def check_targets(mode: dict[str, Any]) -> dict[str, Any]:
    sc = mode["scenarios"]
    best_rps = max(sc[name]["relay"]["rps"] for name in ("claude_c16", "claude_c64"))
    checks = {
        "rps": (best_rps, TARGETS[mode["mode"]]["rps"], best_rps >= TARGETS[mode["mode"]]["rps"]),
        "added_p50_c1_ms": (
            sc["claude_c1"]["added_ms"]["p50"],
            TARGETS["added_p50_c1_ms"],
            (sc["claude_c1"]["added_ms"]["p50"] or 1e9) <= TARGETS["added_p50_c1_ms"],
        ),
        "added_p99_c16_ms": (
            sc["claude_c16"]["added_ms"]["p99"],
            TARGETS["added_p99_c16_ms"],
            (sc["claude_c16"]["added_ms"]["p99"] or 1e9) <= TARGETS["added_p99_c16_ms"],
        ),
        "added_ttfb_ms": (
            sc["claude_stream_c1"]["added_ms"]["p50"],
            TARGETS["added_ttfb_ms"],
            (sc["claude_stream_c1"]["added_ms"]["p50"] or 1e9) <= TARGETS["added_ttfb_ms"],
        ),
    }
    return {k: {"measured": m, "target": t, "met": ok} for k, (m, t, ok) in checks.items()}


def print_report(report: dict[str, Any]) -> None:
    meta = report["meta"]
    changes = (
        f" + uncommitted changes in {len(meta['src_changes'])} src files" if meta.get("src_changes") else ""
    )
    print(f"\naiproxy relay vs direct-to-mock at {meta.get('git_head')}{changes} ({meta['layout']})")
    print(
        f"measured {report['meta']['duration_s']:g}s per phase after {report['meta']['warmup_s']:g}s warmup\n"
    )
    for mode in report["modes"]:
        print(f"== {mode['mode']}: {mode['title']}")
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
        print("targets: " + "; ".join(_target_line(k, v) for k, v in mode["targets"].items()))
        if "what_if" in mode:
            print_what_if(mode)
        if "profile" in mode:
            sampled = mode["profile"]["sampled"]
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
        print()


def _errors(result: dict[str, Any]) -> int:
    return int(result["non_2xx"] + result["connection_errors"] + result.get("protocol_errors", 0))


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


def _target_line(name: str, check: dict[str, Any]) -> str:
    measured = check["measured"]
    shown = "-" if measured is None else (f"{measured:.0f}" if name == "rps" else f"{measured:.3f}")
    return f"{name} {shown} vs {check['target']:g} {'met' if check['met'] else 'MISSED'}"


def code_version() -> dict[str, Any]:
    """The commit and the files under src/ that differ from it (read-only git), so a result says
    which code it measured: others may commit or edit while a run is in progress."""
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "src"], cwd=ROOT, capture_output=True, text=True
    )
    return {
        "git_head": rev.stdout.strip() or None,
        "src_changes": [ln[3:] for ln in dirty.stdout.splitlines()],
    }


def snapshot_code(into: Path) -> dict[str, Any]:
    """Copy src/aiproxy to ``into`` (first on every child's PYTHONPATH): every process of the run,
    relay restarts included, runs the code as it was when the run started, even if others commit
    or edit src/ meanwhile. Returns the version it copied."""
    version = code_version()  # before the copy: a change in between shows up as a dirty file
    shutil.copytree(
        ROOT / "src" / "aiproxy", into / "aiproxy", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    check = subprocess.run(
        [PYTHON, "-c", "import aiproxy; print(aiproxy.__file__)"],
        env={**os.environ, "PYTHONPATH": str(into)},
        cwd=into,
        capture_output=True,
        text=True,
        check=True,
    )
    if not check.stdout.strip().startswith(str(into)):
        raise RuntimeError(f"the code snapshot is not what children import: {check.stdout.strip()}")
    return version


def _meta(args: argparse.Namespace, layout: Layout) -> dict[str, Any]:
    return {
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
    }


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


# -- entry point -----------------------------------------------------------------------------------


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
    p.add_argument("--profile", action="store_true", help="also profile the relay under cProfile")
    p.add_argument("--profile-modes", default="sqlite", help="modes to profile (default sqlite)")
    p.add_argument("--profile-concurrency", type=int, default=16, help="profiled load's c (default 16)")
    p.add_argument("--profile-duration", type=float, default=10.0, help="profiled load seconds (default 10)")
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
    return args


def _terminate(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def print_markdown(report: dict[str, Any]) -> None:
    """The tables of docs/performance.md."""
    meta = report["meta"]
    print(
        f"Commit `{meta.get('git_head')}`, {meta['duration_s']:g} s phases "
        f"after {meta['warmup_s']:g} s warmup,"
    )
    print(f"{meta.get('repeat', 1)} repetition(s), {meta['layout']}.\n")
    for mode in report["modes"]:
        print(f"### {mode['title']} (`{mode['mode']}`)\n")
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
    """Print the tables of a saved result (re-picking the shown repetition with the current rule)."""
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        return reprint(args.report, markdown=args.markdown)
    signal.signal(signal.SIGTERM, _terminate)
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    layout = choose_layout(args.pin)
    report: dict[str, Any] = {"meta": _meta(args, layout), "targets": TARGETS, "modes": []}
    out = args.out or RESULTS_DIR / f"{stamp}.json"
    code = Path(tempfile.mkdtemp(prefix="aiproxy-bench-code-"))
    try:
        report["meta"].update(snapshot_code(code))
        log(
            f"measuring a copy of src/ at {report['meta']['git_head']}"
            f" (+{len(report['meta']['src_changes'])} uncommitted files)"
        )
        for mode in args.modes:
            result = run_mode(mode, layout, args, stamp, code)
            result["targets"] = check_targets(result)
            report["modes"].append(result)
    except KeyboardInterrupt:
        log("interrupted: everything started was stopped and cleaned up")
        return 130
    finally:
        shutil.rmtree(code, ignore_errors=True)
        if report["modes"]:
            out.write_text(json.dumps(report, indent=2, default=str))
    print_report(report)
    print(f"results: {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    ok = all(m["accounting"]["ok"] for m in report["modes"])
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
