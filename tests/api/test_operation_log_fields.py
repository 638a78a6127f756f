"""The operation log as an admin reads it: singular resources, the new row's id on creates, Chinese
descriptions for creates, updates, deletes and toggles; and the cleanup route's batched delete."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import func, insert, select

from aiproxy.store.db import Database
from aiproxy.store.models import OperationLog, utcnow

from ..support import Api, RelayServer
from ..usage_fixtures import database_url

LOGS = "/api/admin/operation-logs"


def _entry(admin: Api, resource: str, path: str, method: str, status: int | None = None) -> dict[str, Any]:
    """The newest operation log of `method path` on `resource`."""
    items = admin.ok("GET", f"{LOGS}?resource={resource}&page_size=100")["items"]
    found = [
        e for e in items if e["path"] == path and e["method"] == method and status in (None, e["status_code"])
    ]
    assert found, (resource, method, path, items[:5])
    return found[0]


def _fields(entry: dict[str, Any]) -> tuple[str, str, str, str]:
    return entry["action"], entry["resource"], entry["resource_id"], entry["description"]


def test_create_update_toggle_delete_of_an_account(admin: Api) -> None:
    name = f"ops-{uuid.uuid4().hex[:8]}"
    secret = "sk-" + uuid.uuid4().hex * 2
    account = admin.ok(
        "POST", "/api/admin/accounts", json={"name": name, "type": "openai", "api_key": secret}
    )
    aid = account["id"]
    path = f"/api/admin/accounts/{aid}"
    created = _entry(admin, "account", "/api/admin/accounts", "POST", 201)
    assert _fields(created) == ("create", "account", str(aid), f"创建账户: {name}")

    admin.ok("PUT", path, json={"name": f"{name}-2"})
    assert _fields(_entry(admin, "account", path, "PUT")) == (
        "update",
        "account",
        str(aid),
        f"更新账户: {aid} ({name}-2)",
    )
    admin.ok("PUT", f"{path}/status", json={"status": "invalid"})
    assert _fields(_entry(admin, "account", f"{path}/status", "PUT")) == (
        "status",
        "account",
        str(aid),
        f"设置账户 {aid} 的状态为 invalid",
    )
    admin.ok("DELETE", path)
    assert _fields(_entry(admin, "account", path, "DELETE")) == (
        "delete",
        "account",
        str(aid),
        f"删除账户: {aid}",
    )
    # Deleting it again is refused and recorded as such.
    assert admin.delete(path)[0] == 404
    assert (
        _entry(admin, "account", path, "DELETE", 404)["description"] == f"删除账户: {aid}（失败，HTTP 404）"
    )
    # The credential is in no field of any of these rows.
    rows = admin.ok("GET", f"{LOGS}?resource=account&page_size=100")["items"]
    assert secret not in repr(rows)


def test_packages_users_and_client_types(admin: Api) -> None:
    package_name = f"pkg-{uuid.uuid4().hex[:8]}"
    package = admin.ok(
        "POST",
        "/api/admin/packages",
        json={"name": package_name, "price": 1.0, "token_quota": 1000, "valid_days": 30},
    )
    pid = package["id"]
    assert _fields(_entry(admin, "package", "/api/admin/packages", "POST", 201)) == (
        "create",
        "package",
        str(pid),
        f"创建套餐: {package_name}",
    )
    # A refused create: nothing was made, so there is no id.
    assert admin.post("/api/admin/packages", json={"name": package_name, "valid_days": 0})[0] == 400
    refused = _entry(admin, "package", "/api/admin/packages", "POST", 400)
    assert _fields(refused) == ("create", "package", "", f"创建套餐: {package_name}（失败，HTTP 400）")

    username = f"u{uuid.uuid4().hex[:10]}"
    user = admin.ok("POST", "/api/admin/users", json={"username": username, "password": "secret-pass-1"})
    uid = user["id"]
    holding = admin.ok("POST", f"/api/admin/user-packages/user/{uid}", json={"package_id": pid})
    assert _fields(_entry(admin, "user_package", f"/api/admin/user-packages/user/{uid}", "POST")) == (
        "create",
        "user_package",
        str(holding["id"]),
        f"为用户 {uid} 分配套餐: {package_name}",
    )
    admin.ok("PUT", f"/api/admin/users/{uid}", json={"max_concurrency": 3})
    assert _fields(_entry(admin, "user", f"/api/admin/users/{uid}", "PUT")) == (
        "update",
        "user",
        str(uid),
        f"更新用户: {uid} ({username})",  # the answer names the user
    )
    admin.ok("DELETE", f"/api/admin/user-packages/{holding['id']}")
    admin.ok("DELETE", f"/api/admin/packages/{pid}")
    assert _fields(_entry(admin, "package", f"/api/admin/packages/{pid}", "DELETE")) == (
        "delete",
        "package",
        str(pid),
        f"删除套餐: {pid}",
    )

    type_name = f"tool-{uuid.uuid4().hex[:8]}"
    client_type = admin.ok(
        "POST",
        "/api/admin/client-filter/client-types",
        json={"name": type_name, "display_name": "Tool", "ua_pattern": r"^tool/\d+"},
    )
    tid = client_type["id"]
    toggle = f"/api/admin/client-filter/client-types/{tid}/toggle"
    admin.ok("PUT", toggle)
    assert _fields(_entry(admin, "client_type", toggle, "PUT")) == (
        "toggle",
        "client_type",
        str(tid),
        f"切换客户端类型状态: {tid} ({type_name})",
    )
    created = _entry(admin, "client_type", "/api/admin/client-filter/client-types", "POST", 201)
    assert (created["resource_id"], created["description"]) == (str(tid), f"创建客户端类型: {type_name}")
    admin.ok("DELETE", f"/api/admin/client-filter/client-types/{tid}")

    stats = admin.ok("GET", f"{LOGS}/stats")["by_resource"]
    assert {"package", "user_package", "user", "client_type"} <= stats.keys()
    assert not [name for name in stats if "-" in name or name.endswith("s")]  # singular, snake_case


def _old_logs(relay: RelayServer, tag: str, ages: list[timedelta]) -> None:
    async def write() -> None:
        db = Database(database_url(relay))
        now = utcnow()
        rows = [
            {"action": "create", "resource": "user", "description": tag, "created_at": now - age}
            for age in ages
        ]
        try:
            async with db.engine.begin() as conn:
                for start in range(0, len(rows), 2000):
                    await conn.execute(insert(OperationLog), rows[start : start + 2000])
        finally:
            await db.close()

    asyncio.run(write())


def _tagged(relay: RelayServer, tag: str) -> int:
    async def count() -> int:
        db = Database(database_url(relay))
        try:
            async with db.session() as session:
                query = select(func.count()).select_from(OperationLog).where(OperationLog.description == tag)
                return int(await session.scalar(query) or 0)
        finally:
            await db.close()

    return asyncio.run(count())


def test_cleanup_deletes_the_old_entries_in_batches(admin: Api, relay: RelayServer) -> None:
    # More rows than one batch; 40 days is younger than the 90 days the background job keeps, so
    # only the route removes them.
    tag = f"old-{uuid.uuid4().hex[:8]}"
    _old_logs(relay, tag, [timedelta(days=40, seconds=n) for n in range(4500)] + [timedelta(days=20)] * 3)
    assert _tagged(relay, tag) == 4503

    assert admin.ok("DELETE", f"{LOGS}/cleanup?days=30") == {"deleted": 4500, "days": 30}
    assert _tagged(relay, tag) == 3  # the 20-day-old ones stay
    entry = _entry(admin, "operation_log", f"{LOGS}/cleanup", "DELETE")
    assert _fields(entry) == ("cleanup", "operation_log", "", "清理 30 天前的操作日志（删除 4500 条）")
    assert admin.ok("DELETE", f"{LOGS}/cleanup?days=30") == {"deleted": 0, "days": 30}
