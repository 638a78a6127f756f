"""Storage for relays a test stops, kills and starts again (so not the session-wide `relay`).

The `backend` fixture (in conftest) gives each such test its own SQLite file or PostgreSQL
database and Redis prefix; `logged` reads the request log straight from that database, so a
test can count rows while no relay is running.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select

from aiproxy.billing.journal import SEGMENT_SUFFIX
from aiproxy.store.db import Database
from aiproxy.store.models import RequestLog, UsageRecord

from ..support import ADMIN_PASSWORD, Api, RelayServer


@dataclass
class Backend:
    name: str
    env: dict[str, str]
    pg_name: str | None = None

    def database_url(self, data_dir: Path) -> str:
        return self.env.get("AIPROXY_DATABASE_URL") or f"sqlite+aiosqlite:///{data_dir}/aiproxy.db"


async def _logged(url: str, key_id: int) -> list[tuple[str, str]]:
    db = Database(url)
    try:
        async with db.session() as session:
            rows = await session.execute(
                select(RequestLog.request_id, RequestLog.user_agent).where(RequestLog.api_key_id == key_id)
            )
            return [(request_id, agent) for request_id, agent in rows]
    finally:
        await db.close()


def logged(backend: Backend, data_dir: Path, key_id: int) -> list[tuple[str, str]]:
    """(request_id, user agent) of every request log of the key, read from the database itself."""
    return asyncio.run(_logged(backend.database_url(data_dir), key_id))


async def _billed(url: str, key_id: int) -> int:
    db = Database(url)
    try:
        async with db.session() as session:
            count = await session.scalar(
                select(func.count(UsageRecord.id)).where(UsageRecord.api_key_id == key_id)
            )
            return int(count or 0)
    finally:
        await db.close()


def billed(backend: Backend, data_dir: Path, key_id: int) -> int:
    """How many requests of the key were billed (have a usage record): what its request_count counts."""
    return asyncio.run(_billed(backend.database_url(data_dir), key_id))


def journal_segments(data_dir: Path) -> list[Path]:
    directory = data_dir / "journal"
    return sorted(directory.glob("*" + SEGMENT_SUFFIX)) if directory.is_dir() else []


def started_relay(data_dir: Path, env: dict[str, str]) -> RelayServer:
    """A relay of its own on `data_dir`, migrated, with scripted logins (no captcha), running."""
    relay = RelayServer(data_dir=data_dir, env_overrides=env)
    relay.set_configs({"captcha_enabled": "false"})  # migrates first
    relay.start()
    return relay


@contextmanager
def two_instances(
    backend: Backend, data_dir: Path, env: dict[str, str] | None = None
) -> Iterator[tuple[RelayServer, RelayServer]]:
    """Two relays on one PostgreSQL database and one Redis, sharing their secrets (skipped on
    SQLite, which is one instance's storage); stopped on the way out."""
    if backend.name == "sqlite":
        pytest.skip("several instances share PostgreSQL and Redis")
    shared = {"AIPROXY_SECRET_KEY": uuid.uuid4().hex * 2, "AIPROXY_JWT_SECRET": uuid.uuid4().hex * 2}
    settings = {**backend.env, **shared, **(env or {})}
    first = started_relay(data_dir / "one", settings)
    try:
        second = started_relay(data_dir / "two", settings)
        try:
            yield first, second
        finally:
            second.stop()
    finally:
        first.stop()


def admin_with_account(relay: RelayServer, credential: str, upstream_url: str) -> Api:
    """The admin, logged in, after adding one Claude account on the fake upstream, once the relay
    serves with it (with Redis the gateway looks for pool changes every half second)."""
    admin = Api(relay.base_url)
    admin.login("admin", ADMIN_PASSWORD)
    admin.ok(
        "POST",
        "/api/admin/accounts",
        json={"name": credential, "type": "claude-official", "api_key": credential, "base_url": upstream_url},
    )
    if "AIPROXY_REDIS_URL" in relay.env_overrides:
        time.sleep(0.6)
    return admin
