"""The processes a benchmark runs and how they are laid out: the stack of one storage mode.

A *stack* is the fake vendor upstream (``aiproxy mock-upstream``) and the relay (``aiproxy serve``,
one or more uvicorn workers) started on free ports in a fresh work dir, plus the storage backend of
the mode (``sqlite``: SQLite + in-process state; ``pg``: a fresh PostgreSQL database and a unique
Redis prefix). The relay is configured through its admin HTTP API as an operator would: accounts
pointing at the mock and one unlimited user key.

Also here: CPU pinning (``Layout``), the copy of ``src/`` every child imports the code from (so a run
measures one version even while others commit), the file-descriptor limit of the run, and the
relay's process tree (a master and its workers) for CPU, memory and descriptor figures.

Used by ``run.py``, ``capacity.py`` and ``retention.py``; nothing here measures anything.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
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
from pathlib import Path
from typing import Any

import psutil

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
LOADGEN = BENCH_DIR / "loadgen.py"
STREAMGEN = BENCH_DIR / "streamgen.py"
PYTHON = sys.executable

PG_ADMIN_DSN = "postgresql://root@127.0.0.1:5432/postgres"
PG_URL = "postgresql+asyncpg://root@127.0.0.1:5432/{db}"
REDIS_URL = "redis://127.0.0.1:6379/14"

MODE_TITLES = {"sqlite": "SQLite + in-process state", "pg": "PostgreSQL + Redis"}


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


def raise_fd_limit(needed: int) -> tuple[int, int]:
    """Raise this process's RLIMIT_NOFILE (soft and hard) to at least ``needed``; children started
    afterwards inherit it. Raising the hard limit needs root (CAP_SYS_RESOURCE): without it the soft
    limit goes as far as the hard one allows. Returns the (soft, hard) limits now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target_hard = hard if hard == resource.RLIM_INFINITY else max(hard, needed)
    target_soft = target_hard if target_hard != resource.RLIM_INFINITY else max(soft, needed)
    for wanted in ((target_soft, target_hard), (hard, hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, wanted)
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)


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
                # Its own session: the group holds the workers a relay master started too.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.pid, signal.SIGKILL)
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


def process_tree(pid: int) -> list[psutil.Process]:
    """The process and its descendants (a relay master and its uvicorn workers)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


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


# -- CPU layout ------------------------------------------------------------------------------------


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


def choose_layout(pin: str, workers: int = 1) -> Layout:
    """``auto``: the relay's N workers get the first N cores, the mock and the load generator the
    next one. When the box has no core left over for them (N >= cores), the relay is not pinned at
    all (its workers go wherever the kernel puts them) and the mock and the load generator share the
    last core with it."""
    cores = sorted(os.sched_getaffinity(0))
    if pin == "none" or len(cores) < 2:
        return Layout(None, None, None)
    # With one worker, the relay gets a core of its own ("one relay worker"); the mock and the load
    # generator, which together cost well under half the relay's CPU per request, share the other.
    if workers < len(cores):
        rest = {cores[workers]}
        return Layout(set(cores[:workers]), rest, rest)
    return Layout(None, {cores[-1]}, {cores[-1]})


# -- one mode: mock + relay + admin setup ----------------------------------------------------------


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
    workers: int = 1  # uvicorn worker processes of the relay
    extra_env: dict[str, str] = field(default_factory=dict)  # AIPROXY_* settings of one bench mode
    python: str = PYTHON  # the interpreter of the relay, the mock and the CLI (bench/ab.py may change it)
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
        env.update(self.extra_env)
        return env

    def configure(self) -> None:
        argv = [self.python, "-m", "aiproxy", "config", "set", "captcha_enabled", "false"]
        done = subprocess.run(argv, env=self.env(), cwd=self.workdir, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"aiproxy config set failed:\n{done.stdout}\n{done.stderr}")

    def start_mock(self) -> None:
        for _ in range(5):
            self.mock_port = free_port()
            argv = [self.python, "-m", "aiproxy", "mock-upstream", "--port", str(self.mock_port)]
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
            argv = [self.python, *(launcher or ["-m", "aiproxy"]), "serve", "--port", str(self.relay_port)]
            if self.workers > 1:
                argv += ["--workers", str(self.workers)]
            self.relay = Proc(name, argv, self.env(), self.workdir, self.layout.relay)
            try:
                wait_http(self.relay, f"{self.relay_url}/health", timeout=60)
                self._wait_workers()
                return
            except RuntimeError as exc:
                if "address already in use" not in str(exc):
                    raise
                self.relay.stop(5)
        raise RuntimeError("could not start the relay")

    def _wait_workers(self, timeout: float = 60.0) -> None:
        """With several workers, /health answers as soon as the first one listens: wait for all."""
        if self.workers <= 1 or self.relay is None:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            workers = [p for p in process_tree(self.relay.pid)[1:] if _serves(p)]
            if len(workers) >= self.workers:
                time.sleep(1.0)  # the last one may still be running its lifespan start-up
                return
            time.sleep(0.2)
        raise RuntimeError(f"the relay did not start {self.workers} workers in {timeout:.0f}s")

    def relay_pids(self) -> list[int]:
        """The relay's processes: the uvicorn master first, then its workers (not helpers such as
        multiprocessing's resource tracker). With one worker, uvicorn serves in the master itself:
        then that process alone."""
        if self.relay is None:
            return []
        if self.workers <= 1:
            return [self.relay.pid]
        tree = process_tree(self.relay.pid)
        return [p.pid for p in tree[:1] + [p for p in tree[1:] if _serves(p)]] or [self.relay.pid]

    def relay_watch(self) -> str:
        """The ``--watch`` value of the load generator for the relay: its CPU is summed over these."""
        return ",".join(map(str, self.relay_pids()))

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


def _serves(proc: psutil.Process) -> bool:
    """A uvicorn worker (not a helper process such as multiprocessing's resource tracker)."""
    with contextlib.suppress(psutil.Error):
        return "resource_tracker" not in " ".join(proc.cmdline())
    return False


@contextlib.contextmanager
def mode_stack(
    mode: str, layout: Layout, args: argparse.Namespace, code: Path, **overrides: Any
) -> Iterator[Stack]:
    """A stack for ``mode`` in a fresh work dir (removed afterwards unless ``--keep``); ``overrides``
    are ``Stack`` fields (``workers``, ``extra_env``, ``user_max_concurrency``)."""
    workdir = Path(tempfile.mkdtemp(prefix=f"aiproxy-bench-{mode}-"))
    backend: Backend = PgRedisBackend() if mode == "pg" else Backend()
    fields: dict[str, Any] = {
        "user_max_concurrency": args.user_max_concurrency,
        "accounts_per_family": args.accounts_per_family,
        "code": code,
        **overrides,
    }
    stack = Stack(backend, layout, workdir, **fields)
    try:
        yield stack
    finally:
        stack.stop()
        backend.cleanup()
        if args.keep:
            log(f"  kept the work dir (logs, data): {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


# -- the code every child runs ---------------------------------------------------------------------


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
