"""Test equipment: real relay processes on 127.0.0.1 and the external services they may use."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from .oauth_support import oauth_env

ADMIN_PASSWORD = "admin-test-pass"
NOWHERE = "http://127.0.0.1:9"  # the discard port: nothing listens there


@contextlib.contextmanager
def mock_upstream_process() -> Iterator[httpx.Client]:
    """`aiproxy mock-upstream` as its own process, until the block ends; the client is bound to it."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "aiproxy", "mock-upstream", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if client.get("/__mock/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "mock upstream did not start"
            time.sleep(0.1)
        yield client
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=10)


DEFAULT_TEST_DATABASE_URL = "postgresql+asyncpg://127.0.0.1:5432/test"
DEFAULT_TEST_REDIS_URL = "redis://127.0.0.1:6379/15"


def services_required() -> bool:
    return os.environ.get("AIPROXY_TEST_REQUIRE_SERVICES") == "1"


def unavailable(reason: str) -> None:
    """Skip on a laptop without PostgreSQL/Redis; fail where CI says they must be there."""
    if services_required():
        pytest.fail(f"{reason} (AIPROXY_TEST_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tcp_reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def redis_url_or_skip() -> str:
    url = os.environ.get("AIPROXY_TEST_REDIS_URL", DEFAULT_TEST_REDIS_URL)
    parsed = httpx.URL(url.replace("redis://", "http://", 1))
    if not _tcp_reachable(parsed.host or "127.0.0.1", parsed.port or 6379):
        unavailable(f"Redis not reachable at {url}; set AIPROXY_TEST_REDIS_URL")
    return url


def create_pg_database() -> tuple[str, str]:
    """A fresh, empty PostgreSQL database for one test session: (async url, name)."""
    url = os.environ.get("AIPROXY_TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL)
    parsed = httpx.URL(url.replace("postgresql+asyncpg://", "http://", 1))
    if not _tcp_reachable(parsed.host or "127.0.0.1", parsed.port or 5432):
        unavailable(f"PostgreSQL not reachable at {url}; set AIPROXY_TEST_DATABASE_URL")
    name = f"aiproxy_test_{uuid.uuid4().hex[:10]}"
    try:
        _psql_admin(url, f'CREATE DATABASE "{name}"')
    except Exception as exc:  # wrong user, no CREATEDB right, …: say which
        unavailable(f"cannot create a test database at {url}: {exc}")
    base = url.rsplit("/", 1)[0]
    return f"{base}/{name}", name


def drop_pg_database(name: str) -> None:
    url = os.environ.get("AIPROXY_TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL)
    _psql_admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _psql_admin(url: str, statement: str) -> None:
    import asyncio

    import asyncpg

    dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)

    async def run() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


@dataclass
class RelayServer:
    """One `aiproxy serve` process with its own data dir and port."""

    data_dir: Path
    env_overrides: dict[str, str] = field(default_factory=dict)
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    serve_args: tuple[str, ...] = ()  # after `aiproxy serve`, e.g. ("--workers", "2")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIPROXY_")}
        env.update(
            AIPROXY_HOST="127.0.0.1",
            AIPROXY_PORT=str(self.port),
            AIPROXY_DATA_DIR=str(self.data_dir),
            AIPROXY_ADMIN_PASSWORD=ADMIN_PASSWORD,
            AIPROXY_LOG_LEVEL="warning",
        )
        # Only 127.0.0.1 is ever a network target: the vendors' OAuth endpoints point at the
        # discard port unless a test points them at the fake providers.
        env.update(oauth_env(NOWHERE))
        env.update(self.env_overrides)
        return env

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "aiproxy", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
        )

    def set_configs(self, values: dict[str, str]) -> None:
        """Runtime configs set in one `aiproxy config set` (which migrates the database first)."""
        pairs = [part for item in values.items() for part in item]
        result = self.cli("config", "set", *pairs)
        assert result.returncode == 0, result.stderr

    def start(self) -> None:
        self.port = self.port or free_port()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "server.log", "ab")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "aiproxy", "serve", *self.serve_args],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"relay exited early (exit status {self.process.returncode}):\n"
                    f"{(self.data_dir / 'server.log').read_text()}"
                )
            try:
                if httpx.get(f"{self.base_url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("relay did not become healthy within 60 s")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def log_text(self) -> str:
        path = self.data_dir / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""


class Api:
    """A thin HTTP client for `/api`: remembers a token, returns (status, decoded JSON)."""

    def __init__(self, base_url: str, token: str | None = None) -> None:
        self.base_url = base_url
        self.token = token
        self.http = httpx.Client(base_url=base_url, timeout=30)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        headers = {**self.headers(), **kwargs.pop("headers", {})}
        response = self.http.request(method, path, headers=headers, **kwargs)
        try:
            body = response.json()
        except ValueError:
            body = response.text
        return response.status_code, body

    def get(self, path: str, **kw: Any) -> tuple[int, Any]:
        return self.call("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> tuple[int, Any]:
        return self.call("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> tuple[int, Any]:
        return self.call("PUT", path, **kw)

    def delete(self, path: str, **kw: Any) -> tuple[int, Any]:
        return self.call("DELETE", path, **kw)

    def ok(self, method: str, path: str, **kw: Any) -> Any:
        """Call and assert the success envelope; returns `data`."""
        status, body = self.call(method, path, **kw)
        assert status in (200, 201), (status, body)
        assert body["code"] == 0, body
        return body["data"]

    def login(self, username: str, password: str) -> str:
        status, body = self.post("/api/auth/login", json={"username": username, "password": password})
        assert status == 200, body
        self.token = body["data"]["token"]
        return self.token

    def close(self) -> None:
        self.http.close()
