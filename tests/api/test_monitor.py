"""Admin: the monitor views (`/api/admin/monitor/*`) on both storage modes.

Shapes and the contract's field names; the database view on SQLite and on PostgreSQL (which row
counts are estimates); the cache view on memory and on Redis; figures that move after real proxy
traffic, account marks and a request holding its slots; users and anonymous callers refused.
How fast each view answers on a million request logs is bench/monitor.py's business.
"""

from __future__ import annotations

import asyncio
import platform
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from aiproxy.api.admin.monitor import _collecting
from aiproxy.errors import AppError
from aiproxy.observe.database_stats import database_stats
from aiproxy.observe.state_stats import key_family, state_stats
from aiproxy.store.db import Database
from aiproxy.store.state import RedisState

from ..gateway import conftest as gateway_fixtures
from ..gateway.conftest import Pool
from ..support import Api, RelayServer
from ..usage_fixtures import database_url

# The gateway's fixtures, for making real proxy traffic from here.
upstream = gateway_fixtures.upstream
pool = gateway_fixtures.pool

MONITOR = "/api/admin/monitor"
VIEWS = ("", "/system", "/cache", "/mysql", "/database", "/accounts", "/users", "/today")
# The contract's fields of each view (系统监控接口文档); ours add more beside them.
CONTRACT = {
    "system": {
        "cpu_cores": int,
        "cpu_usage": float,
        "memory_total": int,
        "memory_used": int,
        "memory_free": int,
        "memory_usage": float,
        "disk_total": int,
        "disk_used": int,
        "disk_free": int,
        "disk_usage": float,
    },
    "cache": {
        "session_count": int,
        "account_concurrency_count": int,
        "user_concurrency_count": int,
        "unavailable_count": int,
    },
    "mysql": {"table_count": int, "data_size": int, "total_size": int, "connected": bool},
    "accounts": {"total": int, "active": int, "rate_limited": int, "invalid": int},
    "users": {"total": int, "active": int, "new_today": int},
    "today_usage": {
        "total_cost": float,
        "total_tokens": int,
        "input_tokens": int,
        "output_tokens": int,
        "cache_creation_tokens": int,
        "cache_read_tokens": int,
        "request_count": int,
    },
}
# Section of the overview -> its own route.
ROUTES = {section: f"/{section}" for section in ("system", "cache", "mysql", "accounts", "users")}
ROUTES["today_usage"] = "/today"
BODY = {"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}


def _is_redis(relay: RelayServer) -> bool:
    return "AIPROXY_REDIS_URL" in relay.env_overrides


def _assert_fields(data: dict[str, Any], fields: dict[str, type], where: str) -> None:
    for name, kind in fields.items():
        assert name in data, (where, name)
        value = data[name]
        if kind is float:
            assert isinstance(value, int | float) and not isinstance(value, bool), (where, name, value)
        else:
            assert type(value) is kind, (where, name, value)  # an int is not a bool here


def _view(admin: Api, path: str) -> dict[str, Any]:
    return admin.ok("GET", f"{MONITOR}{path}")  # type: ignore[no-any-return]


# -- shapes --------------------------------------------------------------------------------------


def test_the_overview_has_every_view_under_the_contracts_names(admin: Api) -> None:
    data = _view(admin, "")
    assert set(CONTRACT) | {"updated_at"} <= set(data)
    for section, fields in CONTRACT.items():
        _assert_fields(data[section], fields, section)
    stamp = datetime.fromisoformat(data["updated_at"].replace("Z", "+00:00"))
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 60
    # The overview's sections are the views themselves.
    for section, route in ROUTES.items():
        assert set(data[section]) == set(_view(admin, route)), section


def test_each_view_answers_the_contracts_fields(admin: Api) -> None:
    for section, route in ROUTES.items():
        _assert_fields(_view(admin, route), CONTRACT[section], route)
    today = _view(admin, "/today")
    assert today["date"] <= datetime.now(UTC).date().isoformat()  # today, UTC (or just before midnight)
    assert set(today["requests"]) == {"total", "success", "errors", "rejected"}
    assert today["requests"]["total"] == sum(today["requests"][k] for k in ("success", "errors", "rejected"))
    for item in today["by_model"]:
        assert set(CONTRACT["today_usage"]) - {"total_cost"} | {"platform", "model", "cost"} <= set(item)
    users = _view(admin, "/users")
    assert users["active"] == today["active_users"] and isinstance(users["top_users"], list)


def test_system_view_reports_this_host_and_worker(admin: Api, relay: RelayServer) -> None:
    system = _view(admin, "/system")
    assert system["cpu_cores"] >= 1 and 0 <= system["cpu_usage"] <= 100
    assert system["cpu_window_seconds"] > 0
    assert system["memory_used"] + system["memory_free"] == system["memory_total"]
    assert 0 <= system["memory_usage"] <= 100 and 0 <= system["disk_usage"] <= 100
    assert system["disk_path"] == str(relay.data_dir.resolve())
    assert 0 < system["disk_used"] <= system["disk_total"]
    assert len(system["load_average"]) == 3
    assert system["python_version"] == platform.python_version() and system["workers"] == 1
    process = system["process"]
    assert process["pid"] == relay.process.pid  # type: ignore[union-attr]
    assert process["rss"] > 0 and process["threads"] >= 1 and process["uptime_seconds"] >= 0
    assert process["cpu_usage"] >= 0


def test_database_view_reports_the_configured_database(admin: Api, relay: RelayServer) -> None:
    database = _view(admin, "/database")
    assert database["connected"] is True
    assert set(_view(admin, "/mysql")) == set(database)
    names = {t["name"]: t for t in database["tables"]}
    assert database["table_count"] == len(names) >= 15
    assert {"request_logs", "usage_records", "daily_usage", "users", "accounts"} <= set(names)
    for table in database["tables"]:
        assert type(table["rows"]) is int and table["rows"] >= 0 and type(table["estimated"]) is bool
    # Small tables are counted: the users table matches the users view.
    assert names["users"]["estimated"] is False
    assert names["users"]["rows"] == _view(admin, "/users")["total"]
    assert database["pool"]["size"] >= 1
    if "AIPROXY_DATABASE_URL" in relay.env_overrides:
        assert database["kind"] == "postgresql" and database["version"]
        assert database["database"] == relay.env_overrides["AIPROXY_DATABASE_URL"].rsplit("/", 1)[1]
        connections = database["connections"]
        assert connections["total"] >= 1 and connections["max_connections"] > 0
        assert database["total_size"] >= database["data_size"] + database["index_size"] > 0
        for table in database["tables"]:
            assert table["total_size"] >= table["data_size"] + table["index_size"] - 8192
    else:
        assert database["kind"] == "sqlite" and database["index_size"] is None
        assert database["path"] == str((relay.data_dir / "aiproxy.db").resolve())
        assert database["file_size"] > 0 and database["journal_mode"] == "wal"
        assert database["total_size"] == database["file_size"] + database["wal_size"]
        assert database["data_size"] + database["free_size"] == database["page_count"] * database["page_size"]


@pytest.fixture
def big_table(relay: RelayServer) -> Iterator[str]:
    """A scratch table of 60,000 rows in the relay's database (above the exact-count limit)."""
    name = f"monitor_probe_{uuid.uuid4().hex[:8]}"
    url = database_url(relay)

    async def run(*statements: str) -> None:
        db = Database(url)
        try:
            async with db.engine.begin() as conn:
                for statement in statements:
                    await conn.execute(text(statement))
            if not db.is_sqlite:
                async with db.engine.connect() as conn:
                    await conn.execution_options(isolation_level="AUTOCOMMIT")
                    await conn.execute(text(f"ANALYZE {name}"))
        finally:
            await db.close()

    rows = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 60000) SELECT i FROM n"
    asyncio.run(run(f"CREATE TABLE {name} (id INTEGER PRIMARY KEY)", f"INSERT INTO {name} (id) {rows}"))
    try:
        yield name
    finally:
        asyncio.run(_drop(url, name))


async def _drop(url: str, name: str) -> None:
    db = Database(url)
    try:
        async with db.engine.begin() as conn:
            await conn.execute(text(f"DROP TABLE IF EXISTS {name}"))
    finally:
        await db.close()


def test_big_tables_are_estimated_not_counted(admin: Api, big_table: str) -> None:
    deadline = time.monotonic() + 10
    while True:  # PostgreSQL's statistics show the rows within a second or so
        tables = {t["name"]: t for t in _view(admin, "/database")["tables"]}
        probe = tables[big_table]
        if probe["rows"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert probe["estimated"] is True
    assert 54_000 <= probe["rows"] <= 66_000, probe


def test_cache_view_reports_the_shared_state(admin: Api, relay: RelayServer) -> None:
    cache = _view(admin, "/cache")
    assert cache["reachable"] is True
    assert cache["keys"]["total"] >= cache["session_count"] >= 0
    assert cache["user_slots_in_use"] >= cache["user_concurrency_count"] >= 0
    assert cache["account_slots_in_use"] >= cache["account_concurrency_count"] >= 0
    assert sum(cache["keys"]["by_family"].values()) == cache["keys"]["total"]
    if _is_redis(relay):
        assert cache["kind"] == "redis"
        redis = cache["redis"]
        assert redis["prefix"] == relay.env_overrides["AIPROXY_REDIS_PREFIX"]
        assert redis["version"] and redis["used_memory"] > 0 and redis["connected_clients"] >= 1
        assert redis["db_keys"] >= cache["keys"]["total"]
    else:
        assert cache["kind"] == "memory" and cache["redis"] is None


def test_key_families_drop_ids_and_digests() -> None:
    assert key_family("sticky:12:" + "a1" * 16) == "sticky"
    assert key_family("slots:user:7") == "slots:user"
    assert key_family("slots:account:31") == "slots:account"
    assert key_family("budget:package:3:9f2c:tokens") == "budget:package"
    assert key_family("ratelimit:login:127.0.0.1") == "ratelimit:login"
    assert key_family("pool:version") == "pool"
    assert key_family("health:sweep:last") == "health:sweep"
    assert key_family("plain") == "other"


def test_a_database_or_redis_that_does_not_answer_is_reported_not_raised() -> None:
    async def read() -> tuple[dict[str, Any], dict[str, Any]]:
        db = Database("postgresql+asyncpg://root@127.0.0.1:9/nowhere")  # the discard port
        state = RedisState.from_url("redis://127.0.0.1:9/0", timeout=0.5)
        try:
            return await database_stats(db=db), await state_stats(state=state)
        finally:
            await db.close()
            await state.close()

    database, cache = asyncio.run(read())
    assert (database["kind"], database["connected"]) == ("postgresql", False) and database["error"]
    assert (cache["kind"], cache["reachable"]) == ("redis", False) and cache["error"]


def test_a_failure_answers_the_contracts_500_without_details() -> None:
    with pytest.raises(AppError) as raised, _collecting():
        raise ExceptionGroup("overview", [ConnectionResetError("secret detail")])
    assert raised.value.status_code == 500
    assert raised.value.message == "获取监控数据失败: ConnectionResetError"


# -- figures that move -----------------------------------------------------------------------------


def _send(pool: Pool, key: str | None = None, session: str | None = None) -> httpx.Response:
    headers = {"x-api-key": key or pool.key, "x-session-id": session or f"monitor-{uuid.uuid4().hex}"}
    return httpx.post(f"{pool.relay.base_url}/claude/v1/messages", json=BODY, headers=headers, timeout=30)


def _wait_for(read: Callable[[], dict[str, Any]], done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while not done(data := read()):
        assert time.monotonic() < deadline, data
        time.sleep(0.1)
    return data


def test_figures_move_after_proxy_traffic(pool: Pool) -> None:
    admin = pool.admin
    before = {route: _view(admin, route) for route in ("/today", "/users", "/accounts", "/cache")}
    first, second = pool.add_account(settle=False), pool.add_account()
    # Totals only: earlier tests' cooldowns may end meanwhile and move the other figures.
    accounts = _view(admin, "/accounts")
    assert accounts["total"] == before["/accounts"]["total"] + 2
    assert accounts["active"] == before["/accounts"]["active"] + 2
    kind = before["/accounts"]["by_type"].get("claude-official", {"total": 0})
    assert accounts["by_type"]["claude-official"]["total"] == kind["total"] + 2

    conversation = f"monitor-{uuid.uuid4().hex}"
    for _ in range(3):
        assert _send(pool, session=conversation).status_code == 200
    refused = _send(pool, key="sk-" + "0" * 64)
    assert refused.status_code == 401
    logs = pool.logs(expect=3)
    total = before["/today"]["requests"]["total"]
    today = _wait_for(lambda: _view(admin, "/today"), lambda t: t["requests"]["total"] >= total + 4)
    if today["date"] != before["/today"]["date"]:
        pytest.skip("the UTC day changed during the test")
    requests, was = today["requests"], before["/today"]["requests"]
    assert requests["total"] == was["total"] + 4
    assert (requests["success"], requests["rejected"]) == (was["success"] + 3, was["rejected"] + 1)
    assert today["request_count"] == before["/today"]["request_count"] + 3
    tokens = sum(log["total_tokens"] for log in logs)
    assert tokens > 0 and today["total_tokens"] == before["/today"]["total_tokens"] + tokens
    cost = sum(log["cost"] for log in logs)
    assert today["total_cost"] == pytest.approx(before["/today"]["total_cost"] + cost)
    assert today["avg_duration_ms"] > 0

    # by_model is per platform and model: earlier tests may have used the model on other platforms.
    def ours(entry: dict[str, Any]) -> bool:
        return entry["model"] == BODY["model"] and entry["platform"] == "claude-official"

    (model,) = [m for m in today["by_model"] if ours(m)]
    was_model = [m for m in before["/today"]["by_model"] if ours(m)]
    assert model["request_count"] == (was_model[0]["request_count"] if was_model else 0) + 3
    platforms = {p["platform"]: p for p in today["by_platform"]}
    assert platforms["claude-official"]["request_count"] >= 3

    users = _view(admin, "/users")
    assert users["active"] == before["/users"]["active"] + 1  # this test's user, new today
    assert users["new_today"] >= 1
    top = {u["user_id"]: u for u in users["top_users"]}
    if len(top) < 10:  # the user is among them unless ten others spent more today
        assert top[pool.user_id]["request_count"] == 3
        assert top[pool.user_id]["total_tokens"] == tokens

    # Two candidate accounts: the conversation was bound to one of them. Creating them bumped the
    # pool version, a key of its own.
    cache = _view(admin, "/cache")
    assert cache["session_count"] >= before["/cache"]["session_count"] + 1
    assert cache["keys"]["by_family"]["sticky"] == cache["session_count"]
    assert cache["keys"]["by_family"]["pool"] == 1

    # An account taken out of rotation for a minute cools down until then.
    account_id = pool.accounts[first]
    admin.ok("POST", f"/api/admin/accounts/{account_id}/cache/unavailable", json={"duration": 60})
    try:
        accounts = _view(admin, "/accounts")
        (held,) = [a for a in accounts["cooling"] if a["id"] == account_id]
        assert held["status"] == "unavailable" and 50 <= held["remaining_seconds"] <= 60
        until = datetime.fromisoformat(held["until"].replace("Z", "+00:00"))
        assert 50 <= (until - datetime.now(UTC)).total_seconds() <= 61
        assert accounts["by_status"]["unavailable"] >= 1 and accounts["cooling_down"] >= 1
        assert _view(admin, "/cache")["unavailable_count"] >= 1
        overview = _view(admin, "")
        assert overview["cache"]["unavailable_count"] == overview["accounts"]["cooling_down"]
        assert account_id in {a["id"] for a in overview["accounts"]["cooling"]}
    finally:
        admin.ok("DELETE", f"/api/admin/accounts/{account_id}/cache/unavailable")
    accounts = _view(admin, "/accounts")
    assert account_id not in {a["id"] for a in accounts["cooling"]}
    assert accounts["total"] == before["/accounts"]["total"] + 2 and second in pool.accounts


def test_slots_held_by_a_request_in_flight_are_counted(pool: Pool) -> None:
    credential = pool.add_account(max_concurrency=1)  # an account without a limit takes no slot
    pool.upstream.behave(credential, "slow", delay_ms=3000, count=1)
    results: list[int] = []
    slow = threading.Thread(target=lambda: results.append(_send(pool).status_code))
    slow.start()
    try:
        accounts = _wait_for(lambda: _view(pool.admin, "/accounts"), lambda a: (a["slots_in_use"] or 0) >= 1)
        assert accounts["accounts_with_slots"] >= 1
        cache = _view(pool.admin, "/cache")
        assert cache["user_concurrency_count"] >= 1 and cache["user_slots_in_use"] >= 1
        assert cache["account_concurrency_count"] >= 1 and cache["account_slots_in_use"] >= 1
        assert cache["keys"]["by_family"].get("slots:account", 0) >= 1
        overview = _view(pool.admin, "")
        assert overview["accounts"]["slots_in_use"] >= 1
    finally:
        slow.join(timeout=30)
    assert results == [200]


# -- who may look ----------------------------------------------------------------------------------


def test_users_and_anonymous_callers_are_refused(make_user: Callable[..., Api], anon: Api) -> None:
    user = make_user()
    for view in VIEWS:
        assert user.get(f"{MONITOR}{view}") == (403, {"code": 403, "message": "需要管理员权限"}), view
        status, body = anon.get(f"{MONITOR}{view}")
        assert status == 401 and body["code"] == 401, view


def test_the_schema_documents_every_view(relay: RelayServer) -> None:
    paths = httpx.get(f"{relay.base_url}/api/openapi.json").json()["paths"]
    for view in VIEWS:
        responses = paths[f"{MONITOR}{view}"]["get"]["responses"]
        assert {"200", "401", "403", "500"} <= set(responses), view
