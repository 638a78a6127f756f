"""The compose stack without Docker: deploy/nginx.conf in front of two relays on one PostgreSQL and Redis.

The relays run as `aiproxy serve` processes with the environment compose.yaml gives them (two
workers each, one secret key, proxy headers trusted; see `relay_env`), started at the same moment on
an empty database as `docker compose up` starts them; nginx runs with the project's own config (see
nginx.py). The vendor is the fake upstream, with one account group per wire format.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select, text

from aiproxy.runtime_configs import RuntimeConfigs
from aiproxy.store.db import Database
from aiproxy.store.models import RequestLog, UsageRecord, User

from ..support import (
    ADMIN_PASSWORD,
    Api,
    RelayServer,
    create_pg_database,
    drop_pg_database,
    free_port,
    mock_upstream_process,
    redis_url_or_skip,
)
from .files import RELAYS, load_compose
from .nginx import Nginx, nginx_binary

ACCOUNT_TYPES = {"claude": "claude-official", "responses": "openai", "gemini": "gemini"}
POOL_POLL = 0.6  # relays on Redis look for pool changes every half second


class Relay(RelayServer):
    """A relay of the stack. Two relays of two workers start at once, six Python processes importing the
    app on a machine that runs other tests too: they get longer than the usual 60 s to come up."""

    START_TIMEOUT = 180.0

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "server.log", "ab")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "aiproxy", "serve"], env=self.env(), stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + self.START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"relay exited early:\n{self.log_text()}")
            try:
                if httpx.get(f"{self.base_url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"relay not healthy within {self.START_TIMEOUT:.0f} s:\n{self.log_text()}")


def relay_env(database_url: str, redis_url: str) -> dict[str, str]:
    """The relays' environment from compose.yaml, one for both: the test's database and Redis (with
    a key prefix of its own) in place of the compose services, `${NAME:-default}` as its default, and a
    fresh value for each required `${NAME:?...}` secret (the tests' password for the first admin)."""
    given = {"AIPROXY_DATABASE_URL": database_url, "AIPROXY_REDIS_URL": redis_url}
    fresh = {"AIPROXY_ADMIN_PASSWORD": ADMIN_PASSWORD}

    def resolve(found: re.Match[str]) -> str:
        name, default = found.group(1), found.group(2)
        if default is not None:
            return default
        return fresh.setdefault(name, secrets.token_urlsafe(32))

    env = {}
    for name, value in load_compose()["services"][RELAYS[0]]["environment"].items():
        env[name] = given.get(name) or re.sub(r"\$\{(\w+)(?::-([^}]*)|:\?[^}]*)\}", resolve, str(value))
    assert "$" not in "".join(env.values()), env
    env["AIPROXY_REDIS_PREFIX"] = f"aiproxy-deploy:{uuid.uuid4().hex[:8]}:"
    return env


@dataclass
class Stack:
    nginx: Nginx
    relays: tuple[RelayServer, RelayServer]
    mock: httpx.Client
    database_url: str
    admin: Api  # through nginx
    groups: dict[str, int] = field(default_factory=dict)  # family -> account group id
    credentials: dict[str, str] = field(default_factory=dict)  # family -> its account's upstream key

    @property
    def url(self) -> str:
        return self.nginx.base_url

    def relay_addresses(self) -> dict[str, str]:
        """nginx's name for each relay (its `$upstream_addr`)."""
        return {f"127.0.0.1:{relay.port}": name for relay, name in zip(self.relays, RELAYS, strict=True)}

    def add_accounts(self) -> None:
        for family, account_type in ACCOUNT_TYPES.items():
            group = self.admin.ok("POST", "/api/admin/account-groups", json={"name": f"deploy-{family}"})
            credential = f"deploy-{family}-{uuid.uuid4().hex[:8]}"
            self.admin.ok(
                "POST",
                "/api/admin/accounts",
                json={
                    "name": credential,
                    "type": account_type,
                    "api_key": credential,
                    "base_url": str(self.mock.base_url).rstrip("/"),
                    "group_ids": [group["id"]],
                },
            )
            self.groups[family] = group["id"]
            self.credentials[family] = credential
        time.sleep(POOL_POLL)

    def new_key(self, family: str) -> tuple[str, int]:
        """A key of the admin's, served by the account group of `family`."""
        created = self.admin.ok("POST", "/api/api-keys", json={"name": f"k-{uuid.uuid4().hex[:6]}"})
        self.admin.ok(
            "PUT",
            f"/api/admin/api-keys/{created['id']}",
            json={"account_group_id": self.groups[family], "rate_limit": 0},
        )
        time.sleep(POOL_POLL)
        return created["key"], created["id"]

    def behave(self, family: str, mode: str, **fields: Any) -> None:
        answer = self.mock.post(
            "/__mock/behaviour", json={"key": self.credentials[family], "mode": mode, **fields}
        )
        assert answer.status_code == 200, answer.text

    def upstream_calls(self, family: str) -> list[dict[str, Any]]:
        records = self.mock.get("/__mock/requests").json()
        return [r for r in records if r.get("api_key") == self.credentials[family]]

    def query(self, build: Any) -> Any:
        """Run `await build(session)` on the stack's database (read straight, not through a relay)."""

        async def run() -> Any:
            db = Database(self.database_url)
            try:
                async with db.session() as session:
                    return await build(session)
            finally:
                await db.close()

        return asyncio.run(run())

    def rows(self, key_id: int, expect: int, timeout: float = 10.0) -> list[RequestLog]:
        """The key's request-log rows once `expect` are written (the recorders write in batches);
        a little longer to be sure no extra row follows."""

        async def read(session: Any) -> list[RequestLog]:
            found = await session.scalars(select(RequestLog).where(RequestLog.api_key_id == key_id))
            return list(found)

        deadline = time.monotonic() + timeout
        while len(found := self.query(read)) < expect:
            assert time.monotonic() < deadline, f"{len(found)} of {expect} request-log rows were written"
            time.sleep(0.1)
        time.sleep(0.5)  # two recorder turns
        return self.query(read)  # type: ignore[no-any-return]

    def billed(self, key_id: int) -> int:
        async def count(session: Any) -> int:
            found = await session.scalar(
                select(func.count(UsageRecord.id)).where(UsageRecord.api_key_id == key_id)
            )
            return int(found or 0)

        return self.query(count)  # type: ignore[no-any-return]

    def admins(self) -> int:
        async def count(session: Any) -> int:
            return int(await session.scalar(select(func.count(User.id)).where(User.role == "admin")) or 0)

        return self.query(count)  # type: ignore[no-any-return]

    def schema_version(self) -> str:
        async def version(session: Any) -> str:
            return str(await session.scalar(text("SELECT version_num FROM alembic_version")))

        return self.query(version)  # type: ignore[no-any-return]


def _scripted_logins(database_url: str, relays: tuple[RelayServer, ...]) -> None:
    """Captcha off (scripted logins), as `aiproxy config set` does it, then wait until every relay
    has reloaded its runtime configs (within about 2 s)."""

    async def change() -> None:
        db = Database(database_url)
        try:
            configs = RuntimeConfigs(db)
            await configs.load()
            await configs.set("captcha_enabled", "false")
            await configs.set("login_rate_limit_max", "1000")
        finally:
            await db.close()

    asyncio.run(change())
    # Each relay has two workers, and a login answered by one says nothing of the other: give every
    # worker its reload (each polls every 2 s) before checking each relay.
    time.sleep(2.5)
    for relay in relays:
        deadline = time.monotonic() + 15
        while True:
            answer = httpx.post(
                f"{relay.base_url}/api/auth/login",
                json={"username": "admin", "password": ADMIN_PASSWORD},
                timeout=10,
            )
            if answer.status_code == 200:
                break
            assert time.monotonic() < deadline, answer.text
            time.sleep(0.2)


@contextlib.contextmanager
def running_stack(root: Path) -> Iterator[Stack]:
    nginx_binary()  # skip (or fail in CI) before starting anything
    redis_url = redis_url_or_skip()
    database_url, pg_name = create_pg_database()
    env = relay_env(database_url, redis_url)
    relays = (
        Relay(root / RELAYS[0], env_overrides=env, port=free_port()),
        Relay(root / RELAYS[1], env_overrides=env, port=free_port()),
    )
    try:
        with mock_upstream_process() as mock:
            try:
                # Together, on the empty database: they migrate and seed it taking turns.
                with ThreadPoolExecutor(len(relays)) as starting:
                    list(starting.map(Relay.start, relays))
                _scripted_logins(database_url, relays)
                nginx = Nginx(root / "nginx", (relays[0].port, relays[1].port))
                nginx.start()
                admin = Api(nginx.base_url)
                try:
                    admin.login("admin", ADMIN_PASSWORD)
                    stack = Stack(nginx, relays, mock, database_url, admin)
                    stack.add_accounts()
                    yield stack
                finally:
                    admin.close()
                    nginx.stop()
            finally:
                for relay in relays:
                    relay.stop()
    finally:
        drop_pg_database(pg_name)
