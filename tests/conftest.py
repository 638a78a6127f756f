"""Shared fixtures: a real relay per storage backend, admin and user clients."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .support import (
    ADMIN_PASSWORD,
    Api,
    RelayServer,
    create_pg_database,
    drop_pg_database,
    redis_url_or_skip,
)

BACKENDS = ["sqlite", "postgres+redis"]


@contextlib.contextmanager
def running_relay(
    backend: str, data_dir: Path, *, redis_prefix: str = "aiproxy-test", env: dict[str, str] | None = None
) -> Iterator[RelayServer]:
    """A relay on `backend` (SQLite + in-process state, or PostgreSQL + Redis), set up for scripted
    tests, with `env` added to its environment, running until the block ends; its PostgreSQL
    database is dropped afterwards."""
    overrides: dict[str, str] = dict(env or {})
    pg_name = None
    if backend == "postgres+redis":
        overrides["AIPROXY_REDIS_URL"] = redis_url_or_skip()
        overrides["AIPROXY_REDIS_PREFIX"] = f"{redis_prefix}:{uuid.uuid4().hex[:8]}:"
        url, pg_name = create_pg_database()
        overrides["AIPROXY_DATABASE_URL"] = url
    server = RelayServer(data_dir=data_dir, env_overrides=overrides)
    # Scripted logins need the captcha off (the captcha tests switch it back on), and every test
    # logs in from 127.0.0.1 (the rate-limit test lowers this again for itself). Tests write
    # request-log history dated years back (usage_fixtures): the retention job must keep it.
    server.set_configs(
        {"captcha_enabled": "false", "login_rate_limit_max": "1000", "request_log_retention_days": "36500"}
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()
        if pg_name:
            drop_pg_database(pg_name)


class SharedRelays:
    """The shared relay of each backend, started on first use and kept until the session ends.

    pytest holds one value of a parametrized fixture at a time, and with test files spread over
    workers (`--dist loadfile`) each file runs its SQLite tests, then its PostgreSQL ones: a plain
    parametrized relay would be stopped and started twice per file. Kept here, each worker starts
    each backend's relay once.
    """

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._tmp = tmp_path_factory
        self._running: dict[str, RelayServer] = {}
        self._stack = contextlib.ExitStack()

    def get(self, backend: str) -> RelayServer:
        server = self._running.get(backend)
        if server is None:
            data_dir = self._tmp.mktemp(backend.replace("+", "-"))
            server = self._running[backend] = self._stack.enter_context(running_relay(backend, data_dir))
        return server

    def close(self) -> None:
        self._stack.close()


@pytest.fixture(scope="session")
def shared_relays(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedRelays]:
    relays = SharedRelays(tmp_path_factory)
    yield relays
    relays.close()


@pytest.fixture(scope="session", params=BACKENDS)
def relay(request: pytest.FixtureRequest, shared_relays: SharedRelays) -> RelayServer:
    """A running relay: SQLite + in-process state, or PostgreSQL + Redis (the scale-out mode)."""
    return shared_relays.get(request.param)


@pytest.fixture
def anon(relay: RelayServer) -> Iterator[Api]:
    api = Api(relay.base_url)
    yield api
    api.close()


@pytest.fixture
def admin(relay: RelayServer) -> Iterator[Api]:
    api = Api(relay.base_url)
    api.login("admin", ADMIN_PASSWORD)
    yield api
    api.close()


@pytest.fixture
def make_user(admin: Api, relay: RelayServer) -> Iterator[object]:
    """Factory: create a user through the admin API and return a logged-in client for it."""
    clients: list[Api] = []

    def factory(**fields: object) -> Api:
        username = str(fields.pop("username", f"u{uuid.uuid4().hex[:10]}"))
        password = str(fields.pop("password", "secret-pass"))
        data = admin.ok(
            "POST", "/api/admin/users", json={"username": username, "password": password, **fields}
        )
        client = Api(relay.base_url)
        client.login(username, password)
        client.user = data  # type: ignore[attr-defined]
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()
