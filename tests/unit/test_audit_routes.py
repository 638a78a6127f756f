"""The operation log's route table: every admin write has a row, and the fields read as documented."""

from __future__ import annotations

from typing import Any

from aiproxy.api.audit_routes import ADMIN_PREFIX, ROUTES, Described, describe
from aiproxy.app import create_api

WRITES = {"post", "put", "patch", "delete"}


def _admin_writes() -> set[str]:
    schema = create_api().openapi()
    return {
        f"{method.upper()} {path.removeprefix(ADMIN_PREFIX)}"
        for path, operations in schema["paths"].items()
        if path.startswith(ADMIN_PREFIX + "/")
        for method in operations
        if method in WRITES
    }


def test_every_admin_write_has_a_row() -> None:
    routed = _admin_writes()
    assert len(routed) > 70
    assert sorted(routed - ROUTES.keys()) == []
    for key, audit in ROUTES.items():
        assert audit.resource == audit.resource.lower() and "-" not in audit.resource, key
        assert not audit.resource.endswith("s"), key  # singular, as the docs name them
        assert audit.text and audit.action, key


def _describe(
    method: str,
    template: str,
    *,
    params: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    body: Any = None,
    status: int = 200,
    data: Any = None,
) -> Described:
    return describe(method, ADMIN_PREFIX + template, params or {}, query or {}, body, status, data)


def test_creates_take_the_new_id_and_name_from_the_answer() -> None:
    created = _describe(
        "POST", "/accounts", body={"name": "test-account", "api_key": "***"}, status=201, data={"id": 5}
    )
    assert created == Described("create", "account", "5", "创建账户: test-account")
    user = _describe(
        "POST", "/users", body={"username": "dave"}, status=201, data={"id": 7, "username": "dave"}
    )
    assert user == Described("create", "user", "7", "创建用户: dave")
    # A name only the answer has (a model created from its id), and a key's secret never read.
    key = _describe(
        "POST",
        "/users/{user_id}/api-keys",
        params={"user_id": "7"},
        body={"name": "ci"},
        status=201,
        data={"id": 12, "name": "ci", "key": "sk-" + "a" * 64},
    )
    assert key == Described("create", "api_key", "12", "为用户 7 创建 API Key: ci")
    holding = _describe(
        "POST",
        "/user-packages/user/{user_id}",
        params={"user_id": "7"},
        body={"package_id": 3},
        status=201,
        data={"id": 40, "package_name": "Pro"},
    )
    assert holding == Described("create", "user_package", "40", "为用户 7 分配套餐: Pro")


def test_a_refused_create_names_no_id() -> None:
    refused = _describe("POST", "/packages", body={"name": "dup"}, status=400)
    assert refused == Described("create", "package", "", "创建套餐: dup（失败，HTTP 400）")


def test_updates_deletes_and_toggles_name_the_path_id() -> None:
    assert _describe("PUT", "/users/{user_id}", params={"user_id": "5"}, body={"password": "***"}) == (
        Described("update", "user", "5", "更新用户: 5")
    )
    renamed = _describe("PUT", "/users/{user_id}", params={"user_id": "5"}, body={"username": "alice"})
    assert renamed.description == "更新用户: 5 (alice)"
    assert _describe("DELETE", "/packages/{package_id}", params={"package_id": "3"}) == (
        Described("delete", "package", "3", "删除套餐: 3")
    )
    toggled = _describe(
        "PUT",
        "/client-filter/client-types/{type_id}/toggle",
        params={"type_id": "2"},
        data={"enabled": False},
    )
    assert toggled == Described("toggle", "client_type", "2", "切换客户端类型状态: 2")
    # The last path parameter is the resource: the key, not its user.
    key = _describe("DELETE", "/users/{user_id}/api-keys/{key_id}", params={"user_id": "5", "key_id": "12"})
    assert key == Described("delete", "api_key", "12", "删除 API Key: 12")
    missing = _describe("DELETE", "/accounts/{account_id}", params={"account_id": "99"}, status=404)
    assert missing.description == "删除账户: 99（失败，HTTP 404）"


def test_templates_read_path_query_body_and_answer() -> None:
    config = _describe("PUT", "/configs", body={"key": "site_name", "value": "My AI Proxy"})
    assert config == Described("update", "config", "site_name", "更新配置 site_name 为 My AI Proxy")
    cleanup = _describe(
        "DELETE", "/operation-logs/cleanup", query={"days": "30"}, data={"deleted": 12, "days": 30}
    )
    assert cleanup == Described("cleanup", "operation_log", "", "清理 30 天前的操作日志（删除 12 条）")
    default_days = _describe("DELETE", "/operation-logs/cleanup", data={"deleted": 0, "days": 90})
    assert default_days.description == "清理 90 天前的操作日志（删除 0 条）"
    refused = _describe("DELETE", "/operation-logs/cleanup", query={"days": "0"}, status=400)
    assert refused.description == "清理 0 天前的操作日志（删除 ? 条）（失败，HTTP 400）"
    member = _describe(
        "DELETE",
        "/account-groups/{group_id}/accounts/{account_id}",
        params={"group_id": "3", "account_id": "8"},
    )
    assert member == Described("remove-account", "account_group", "3", "从账户分组 3 移除账户 8")


def test_secrets_never_reach_a_description() -> None:
    secret = "sk-" + "b" * 40
    created = _describe("POST", "/accounts", body={"name": f"team {secret}"}, status=201, data={"id": 1})
    assert secret not in created.description and "sk-***" in created.description
    config = _describe("PUT", "/configs", body={"key": "site_name", "value": secret})
    assert secret not in config.description


def test_a_route_missing_from_the_table_is_still_named() -> None:
    found = _describe("DELETE", "/widgets/{widget_id}", params={"widget_id": "4"})
    assert found == Described("delete", "widget", "4", "删除 widgets: 4")
