"""Admin: runtime configs (including edits from the shell) and the operation log."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable

from ..support import ADMIN_PASSWORD, Api, RelayServer


def test_configs_grouped_typed_and_validated(admin: Api) -> None:
    grouped = admin.ok("GET", "/api/admin/configs")
    assert grouped["system"]["site_name"] == "AI Proxy" and grouped["system"]["allow_register"] is True
    assert grouped["proxy"]["retry_count"] == 5 and grouped["proxy"]["session_ttl"] == 30
    assert grouped["proxy"]["allow_unknown_models"] is True and grouped["proxy"]["timeout"] == 120
    assert admin.ok("GET", "/api/admin/configs/category/proxy") == grouped["proxy"]
    assert admin.get("/api/admin/configs/category/nope")[0] == 400
    schema = {row["key"]: row for row in admin.ok("GET", "/api/admin/configs/schema")}
    assert schema["retry_count"]["type"] == "int" and schema["retry_count"]["default"] == 5

    assert (
        admin.ok(
            "PUT", "/api/admin/configs", json={"category": "system", "key": "site_name", "value": "Relay X"}
        )["value"]
        == "Relay X"
    )
    assert admin.ok("GET", "/api/admin/configs")["system"]["site_name"] == "Relay X"
    # Strings a form would send are converted to the declared type.
    assert admin.ok("PUT", "/api/admin/configs", json={"key": "retry_count", "value": "3"})["value"] == 3
    assert admin.ok("GET", "/api/admin/configs/category/proxy")["retry_count"] == 3

    bad = [
        ({"key": "retry_count", "value": "many"}, "config 'retry_count' expects an integer value"),
        ({"key": "retry_count", "value": 99}, "config 'retry_count' must be <= 20"),
        ({"key": "allow_register", "value": "perhaps"}, "config 'allow_register' expects a boolean value"),
        ({"key": "no_such_key", "value": 1}, "unknown config key 'no_such_key'"),
        (
            {"category": "proxy", "key": "site_name", "value": "x"},
            "config 'site_name' belongs to category 'system'",
        ),
        ({"key": "site_name"}, "value: field required"),
        ({"key": "retry_count", "value": None}, "config 'retry_count' expects an integer value"),
        # Numbers without a maximum of their own still stay where TTLs and dates can use them.
        (
            {"key": "login_rate_limit_window", "value": 10**12},
            "config 'login_rate_limit_window' must be <= 1e+08",
        ),
        ({"key": "session_ttl", "value": "99999999999999999999999"}, "config 'session_ttl' must be <= 1e+08"),
        ({"key": "global_price_rate", "value": "nan"}, "config 'global_price_rate' must be a finite number"),
    ]
    for payload, message in bad:
        assert admin.put("/api/admin/configs", json=payload) == (400, {"code": 400, "message": message})
    admin.ok("PUT", "/api/admin/configs", json={"key": "retry_count", "value": 5})
    admin.ok("PUT", "/api/admin/configs", json={"key": "site_name", "value": "AI Proxy"})


def test_sync_status_and_trigger(admin: Api, make_user: Callable[..., Api]) -> None:
    before = admin.ok("GET", "/api/admin/configs/sync/status")
    assert before["in_sync"] is True and before["instance_id"]
    caches = ["configs", "oauth_tokens", "account_pool", "api_keys", "model_prices", "client_filter"]
    assert before["caches"] == caches
    # A user's token is refused before anything moves.
    user = make_user()
    assert user.post("/api/admin/configs/sync/trigger") == (403, {"code": 403, "message": "需要管理员权限"})
    unmoved = admin.ok("GET", "/api/admin/configs/sync/status")
    assert unmoved["shared_reload_version"] == before["shared_reload_version"]
    after = admin.ok("POST", "/api/admin/configs/sync/trigger")
    assert after["version"] == before["shared_version"] + 1 and after["in_sync"] is True
    reload_version = before["shared_reload_version"] + 1
    assert after["shared_reload_version"] == after["local_reload_version"] == reload_version
    assert after["reloaded"] == caches and after["failed"] == [] and after["reload_failed"] == []
    assert after["last_reload_at"] is not None


def test_shell_config_edit_reaches_running_relay(admin: Api, relay: RelayServer) -> None:
    result = relay.cli("config", "set", "site_name", "From Shell")
    assert result.returncode == 0, result.stderr
    assert relay.cli("config", "get", "site_name").stdout.strip() == json.dumps("From Shell")
    deadline = time.monotonic() + 10
    while admin.ok("GET", "/api/admin/configs")["system"]["site_name"] != "From Shell":
        assert time.monotonic() < deadline, "running relay did not pick up the shell edit"
        time.sleep(0.2)
    bad = relay.cli("config", "set", "retry_count", "lots")
    assert bad.returncode == 2 and "expects an integer value" in bad.stderr
    # Several pairs at once: all are checked before any is stored.
    refused = relay.cli("config", "set", "site_name", "Never Stored", "retry_count", "lots")
    assert refused.returncode == 2 and "expects an integer value" in refused.stderr
    assert relay.cli("config", "get", "site_name").stdout.strip() == json.dumps("From Shell")
    odd = relay.cli("config", "set", "site_name", "X", "retry_count")
    assert odd.returncode == 2 and "KEY VALUE pairs" in odd.stderr
    both = relay.cli("config", "set", "site_name", "Both", "retry_count", "2")
    assert both.returncode == 0 and both.stdout.splitlines() == ['site_name = "Both"', "retry_count = 2"]
    listing = relay.cli("config", "list").stdout
    assert "site_name" in listing and "captcha_enabled" in listing
    restored = relay.cli("config", "set", "site_name", "AI Proxy", "retry_count", "5")
    assert restored.returncode == 0, restored.stderr


def test_create_admin_cli(relay: RelayServer, anon: Api) -> None:
    name = f"ops{uuid.uuid4().hex[:6]}"
    result = relay.cli("create-admin", "--username", name, "--password", "ops-pass-1")
    assert result.returncode == 0 and "created" in result.stdout
    anon.login(name, "ops-pass-1")
    assert anon.ok("GET", "/api/profile")["role"] == "admin"
    assert (
        relay.cli("create-admin", "--username", name, "--password", "ops-pass-2")
        .stdout.strip()
        .endswith("updated")
    )
    assert anon.get("/api/profile")[0] == 401  # the reset ended the old session
    assert relay.cli("create-admin", "--username", name, "--password", "123").returncode == 2


def test_admin_writes_are_logged_with_secrets_masked(admin: Api) -> None:
    name = f"log{uuid.uuid4().hex[:6]}"
    user = admin.ok("POST", "/api/admin/users", json={"username": name, "password": "very-secret-1"})
    key = admin.ok("POST", f"/api/admin/users/{user['id']}/api-keys", json={"name": "k"})
    admin.ok("POST", "/api/admin/api-keys/lookup", json={"key": key["key"]})
    admin.ok("PUT", f"/api/admin/users/{user['id']}", json={"password": "other-secret-2"})
    admin.put(f"/api/admin/users/{user['id']}", json={"role": "bogus"})  # refused: still recorded

    logs = admin.ok("GET", "/api/admin/operation-logs?resource=user&page_size=100")["items"]
    mine = [entry for entry in logs if entry["resource_id"] == str(user["id"])]
    actions = [entry["action"] for entry in mine]
    assert actions.count("create") == 1 and actions.count("update") == 2
    created = next(e for e in mine if e["action"] == "create")
    assert created["path"] == "/api/admin/users" and created["description"] == f"创建用户: {name}"
    assert created["username"] == "admin" and created["ip"] == "127.0.0.1" and created["status_code"] == 201
    updates = {e["status_code"]: e["description"] for e in mine if e["action"] == "update"}
    assert updates == {
        200: f"更新用户: {user['id']} ({name})",
        400: f"更新用户: {user['id']}（失败，HTTP 400）",
    }
    # The key made for the user is an api_key of its own, named by the new key's id.
    key_logs = admin.ok("GET", "/api/admin/operation-logs?resource=api_key&action=create")["items"]
    key_created = next(e for e in key_logs if e["resource_id"] == str(key["id"]))
    assert key_created["description"] == f"为用户 {user['id']} 创建 API Key: k"

    full = admin.ok("GET", f"/api/admin/operation-logs/{created['id']}")
    assert json.loads(full["request_body"]) == {"username": name, "password": "***"}
    every_body = " ".join(
        admin.ok("GET", f"/api/admin/operation-logs/{e['id']}")["request_body"]
        for e in admin.ok("GET", "/api/admin/operation-logs?page_size=100")["items"]
    )
    for secret in ("very-secret-1", "other-secret-2", key["key"], ADMIN_PASSWORD):
        assert secret not in every_body
    lookup = admin.ok("GET", "/api/admin/operation-logs?resource=api_key&action=lookup")["items"][0]
    assert (lookup["resource_id"], lookup["description"]) == (
        str(key["id"]),
        f"按密钥查找 API Key: {key['id']}",
    )
    assert admin.ok("GET", f"/api/admin/operation-logs/{lookup['id']}")["request_body"] == '{"key":"sk-***"}'

    # Reads are not logged.
    total = admin.ok("GET", "/api/admin/operation-logs")["total"]
    admin.ok("GET", "/api/admin/users")
    assert admin.ok("GET", "/api/admin/operation-logs")["total"] == total


def test_operation_log_filters_stats_and_cleanup(admin: Api) -> None:
    admin.ok("POST", "/api/admin/models/init-defaults")
    me = admin.ok("GET", "/api/profile")
    today = time.strftime("%Y-%m-%d", time.gmtime())
    data = admin.ok(
        "GET", f"/api/admin/operation-logs?user_id={me['id']}&start_date={today}&end_date={today}"
    )
    assert data["total"] >= 1 and all(e["user_id"] == me["id"] for e in data["items"])
    assert (
        admin.ok("GET", "/api/admin/operation-logs?start_date=2000-01-01&end_date=2000-01-02")["total"] == 0
    )
    assert admin.get("/api/admin/operation-logs?start_date=yesterday")[0] == 400
    stats = admin.ok("GET", "/api/admin/operation-logs/stats")
    assert stats["total"] >= 1 and stats["today"] >= 1 and stats["by_resource"]["model"] >= 1
    assert stats["by_action"]["init-defaults"] >= 1
    assert admin.get("/api/admin/operation-logs/99999999")[0] == 404
    assert admin.delete("/api/admin/operation-logs/cleanup?days=0")[0] == 400
    cleaned = admin.ok("DELETE", "/api/admin/operation-logs/cleanup?days=30")
    assert cleaned == {"deleted": 0, "days": 30}  # everything here is younger than 30 days
