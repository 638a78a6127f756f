"""Two relay instances of two uvicorn workers each on one PostgreSQL database and one Redis prefix.

The `cluster` fixture is module-scoped: the four processes, the fake upstream and the database
serve every test of a module, and each test isolates itself with its own users, keys, account
groups and upstream credentials (the fake upstream's switches and counters are keyed by them).
Clients reach the relay over fresh connections, alternating between the instances, so the kernel
spreads them over each instance's workers the way a load balancer's new connections would be.

Without PostgreSQL or Redis the tests skip with the reason (they fail instead with
AIPROXY_TEST_REQUIRE_SERVICES=1, as in CI).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import func, select

from aiproxy import state_keys
from aiproxy.store.db import Database
from aiproxy.store.models import ApiKey, RequestLog, UsageRecord, UserPackage

from ..support import (
    ADMIN_PASSWORD,
    Api,
    RelayServer,
    create_pg_database,
    drop_pg_database,
    mock_upstream_process,
    redis_url_or_skip,
)

WORKERS = 2
# A model of the tests' own, priced so that costs are exact in binary floating point: output only,
# 1,953.125 $ per million tokens = 2^-9 $ a token, so an answer of 8 tokens costs exactly 2^-6 $.
MODEL = "scaleout-model"
OUTPUT_PRICE = 1953.125
TOKEN_COST = OUTPUT_PRICE / 1_000_000
POOL_POLL = 0.6  # each worker compares the pool version every half second with Redis
CONFIG_POLL = 3.0  # each worker reloads runtime configs within 2 s of a change
FLUSH = 0.25  # the recorder's flush interval (the default)


@dataclass
class Tenant:
    """One test's user, key, account group and accounts (upstream credential -> account id)."""

    user_id: int
    key: str
    key_id: int
    group_id: int
    accounts: dict[str, int] = field(default_factory=dict)
    package_id: int | None = None  # the user package the key is bound to, if any

    @property
    def credentials(self) -> list[str]:
        return list(self.accounts)


@dataclass
class Row:
    """A request-log row, as the database has it."""

    request_id: str
    user_agent: str
    status: str
    status_code: int
    account_id: int | None
    total_tokens: int
    cost: float
    flags: str
    error_message: str

    @property
    def worker(self) -> str:
        """The gateway process that served it: request ids start with a random prefix per process."""
        return self.request_id[:12]


class Cluster:
    def __init__(
        self, instances: tuple[RelayServer, RelayServer], upstream: httpx.Client, database_url: str
    ) -> None:
        self.instances = instances
        self.upstream = upstream
        self.upstream_url = str(upstream.base_url).rstrip("/")
        self.database_url = database_url
        env = instances[0].env_overrides
        self.redis = redis.Redis.from_url(env["AIPROXY_REDIS_URL"], decode_responses=True)
        self.prefix = env["AIPROXY_REDIS_PREFIX"]
        self.admins = tuple(Api(relay.base_url) for relay in instances)
        for admin in self.admins:
            admin.login("admin", ADMIN_PASSWORD)  # before any test turns the captcha on

    @property
    def admin(self) -> Api:
        return self.admins[0]

    @property
    def bases(self) -> list[str]:
        return [relay.base_url for relay in self.instances]

    def close(self) -> None:
        for admin in self.admins:
            admin.close()
        self.redis.close()

    # -- setting up a test's tenant -------------------------------------------------------------

    def tenant(
        self,
        *,
        accounts: int = 1,
        account: dict[str, Any] | None = None,
        user: dict[str, Any] | None = None,
        key: dict[str, Any] | None = None,
        package: dict[str, Any] | None = None,
    ) -> Tenant:
        """A user (no concurrency limit unless `user` says), `accounts` accounts on the fake upstream
        in a new group, optionally a package the user holds, and a key bound to the group (and to
        the package), with no per-minute limit unless `key` says. Created on the first instance;
        returns once every worker serves with the new accounts."""
        admin = self.admin
        suffix = uuid.uuid4().hex[:10]
        group = admin.ok("POST", "/api/admin/account-groups", json={"name": f"g-{suffix}"})
        created: dict[str, int] = {}
        for _ in range(accounts):
            credential = f"up-{uuid.uuid4().hex[:12]}"
            body = {
                "name": f"acc-{credential}",
                "type": "claude-official",
                "api_key": credential,
                "base_url": self.upstream_url,
                "group_ids": [group["id"]],
                **(account or {}),
            }
            created[credential] = admin.ok("POST", "/api/admin/accounts", json=body)["id"]
        fields = {"username": f"u{suffix}", "password": "user-pass-1", "max_concurrency": 0, **(user or {})}
        made = admin.ok("POST", "/api/admin/users", json=fields)
        package_id = None
        key_fields: dict[str, Any] = {"name": "main", "account_group_id": group["id"], "rate_limit": 0}
        if package is not None:
            offer = admin.ok(
                "POST",
                "/api/admin/packages",
                json={"name": f"p-{suffix}", "price": 1, "valid_days": 30, **package},
            )
            held = admin.ok(
                "POST", f"/api/admin/user-packages/user/{made['id']}", json={"package_id": offer["id"]}
            )
            package_id = key_fields["user_package_id"] = held["id"]
        issued = admin.ok(
            "POST", f"/api/admin/users/{made['id']}/api-keys", json={**key_fields, **(key or {})}
        )
        time.sleep(POOL_POLL)
        return Tenant(made["id"], issued["key"], issued["id"], group["id"], created, package_id)

    def set_config(self, key: str, value: Any) -> None:
        self.admin.ok("PUT", "/api/admin/configs", json={"key": key, "value": value})

    # -- the fake upstream ----------------------------------------------------------------------

    def behave(self, credential: str, mode: str, **fields: Any) -> None:
        answer = self.upstream.post("/__mock/behaviour", json={"key": credential, "mode": mode, **fields})
        assert answer.status_code == 200, answer.text

    def upstream_calls(self, credential: str) -> list[dict[str, Any]]:
        records = self.upstream.get("/__mock/requests").json()
        return [r for r in records if r.get("api_key") == credential]

    def upstream_concurrency(self) -> dict[str, dict[str, int]]:
        return self.upstream.get("/__mock/concurrency").json()  # type: ignore[no-any-return]

    # -- what the relay wrote -------------------------------------------------------------------

    def rows(self, key_id: int, *, expect: int, timeout: float = 30.0) -> list[Row]:
        """The key's request-log rows once `expect` of them are written, and a flush later (so a
        row written twice would show up too)."""
        deadline = time.monotonic() + timeout
        while (count := self._count(key_id)) < expect:
            assert time.monotonic() < deadline, f"only {count} of {expect} request-log rows were written"
            time.sleep(0.1)
        time.sleep(2 * FLUSH)
        return asyncio.run(self._rows(key_id))

    def workers(self, key_id: int) -> set[str]:
        """The gateway processes that have logged requests of the key (see `Row.worker`)."""
        prefix = func.substr(RequestLog.request_id, 1, 12)
        statement = select(func.array_agg(func.distinct(prefix))).where(RequestLog.api_key_id == key_id)
        return set(asyncio.run(self._query(statement)) or ())

    def _count(self, key_id: int) -> int:
        return asyncio.run(
            self._query(select(func.count(RequestLog.id)).where(RequestLog.api_key_id == key_id))
        )

    async def _query(self, statement: Any) -> Any:
        db = Database(self.database_url)
        try:
            async with db.session() as session:
                return await session.scalar(statement)
        finally:
            await db.close()

    async def _rows(self, key_id: int) -> list[Row]:
        db = Database(self.database_url)
        try:
            async with db.session() as session:
                found = await session.execute(
                    select(
                        RequestLog.request_id,
                        RequestLog.user_agent,
                        RequestLog.status,
                        RequestLog.status_code,
                        RequestLog.account_id,
                        RequestLog.total_tokens,
                        RequestLog.cost,
                        RequestLog.flags,
                        RequestLog.error_message,
                    ).where(RequestLog.api_key_id == key_id)
                )
                return [Row(*values) for values in found]
        finally:
            await db.close()

    def billing(self, key_id: int) -> dict[str, float]:
        """What the key was billed: its usage records (count, tokens, dollars) and its counters."""

        async def read() -> dict[str, float]:
            db = Database(self.database_url)
            try:
                async with db.session() as session:
                    records = (
                        await session.execute(
                            select(
                                func.count(UsageRecord.id),
                                func.coalesce(func.sum(UsageRecord.total_tokens), 0),
                                func.coalesce(func.sum(UsageRecord.cost), 0.0),
                                func.count(func.distinct(UsageRecord.request_id)),
                            ).where(UsageRecord.api_key_id == key_id)
                        )
                    ).one()
                    key = await session.get(ApiKey, key_id)
                    assert key is not None
                    return {
                        "records": records[0],
                        "tokens": int(records[1]),
                        "cost": float(records[2]),
                        "distinct_requests": records[3],
                        "key_requests": key.request_count,
                        "key_tokens": key.used_tokens,
                        "key_cost": key.used_cost,
                    }
            finally:
                await db.close()

        return asyncio.run(read())

    def user_package(self, user_package_id: int) -> UserPackage:
        async def read() -> UserPackage:
            db = Database(self.database_url)
            try:
                async with db.session() as session:
                    found = await session.get(UserPackage, user_package_id)
                    assert found is not None
                    return found
            finally:
                await db.close()

        return asyncio.run(read())

    # -- shared state ---------------------------------------------------------------------------

    def slot_entries(self, *keys: str) -> dict[str, int]:
        """Entries (live or expired leases) left in these slot sets in Redis."""
        return {key: int(self.redis.zcard(self.prefix + key)) for key in keys}

    def tenant_slots(self, tenant: Tenant) -> dict[str, int]:
        keys = [state_keys.user_slots(tenant.user_id)]
        keys += [state_keys.account_slots(account_id) for account_id in tenant.accounts.values()]
        return self.slot_entries(*keys)

    def captcha_answer(self, captcha_id: str) -> str | None:
        return self.redis.get(self.prefix + state_keys.captcha_answer(captcha_id))  # type: ignore[return-value]


def _instance(data_dir: Path, env: dict[str, str]) -> RelayServer:
    return RelayServer(data_dir=data_dir, env_overrides=env, serve_args=("--workers", str(WORKERS)))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    env = {
        "AIPROXY_REDIS_URL": redis_url_or_skip(),
        "AIPROXY_REDIS_PREFIX": f"aiproxy-scaleout:{uuid.uuid4().hex[:8]}:",
        "AIPROXY_SECRET_KEY": uuid.uuid4().hex * 2,
        "AIPROXY_JWT_SECRET": uuid.uuid4().hex * 2,
        # Behind a load balancer that sets X-Forwarded-For: each test logs in from addresses of its own.
        "AIPROXY_TRUST_PROXY_HEADERS": "true",
        # These tests check what the instances agree on, not Redis's deadline (test_redis_outage.py
        # does): on a 2-core box running four relay processes flat out, a worker's event loop can
        # lag past the default 0.5 s, which the relay would take for an outage (503, fail closed).
        "AIPROXY_REDIS_TIMEOUT": "5",
    }
    url, pg_name = create_pg_database()
    env["AIPROXY_DATABASE_URL"] = url
    root = tmp_path_factory.mktemp("scaleout")
    instances = (_instance(root / "one", env), _instance(root / "two", env))
    try:
        # Scripted admin logins (the captcha test switches it on for itself); this migrates too.
        instances[0].set_configs({"captcha_enabled": "false"})
        with mock_upstream_process() as upstream:
            with ThreadPoolExecutor(2) as starting:
                list(starting.map(RelayServer.start, instances))
            cluster = Cluster(instances, upstream, url)
            try:
                cluster.admin.ok(
                    "POST",
                    "/api/admin/models",
                    json={
                        "model_id": MODEL,
                        "model_name": "Scale-out test model",
                        "platform": "claude-official",
                        "input_price": 0.0,
                        "output_price": OUTPUT_PRICE,
                    },
                )
                yield cluster
            finally:
                cluster.close()
                for relay in instances:
                    relay.stop()
    finally:
        for relay in instances:
            relay.stop()
        drop_pg_database(pg_name)
