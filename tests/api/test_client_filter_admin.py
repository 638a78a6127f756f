"""Admin routes of the client filter: settings, client types, rules; bad input refused on save."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from ..support import Api

BUILTIN = {"claude-code", "codex-cli", "gemini-cli", "anthropic-sdk", "openai-sdk", "google-genai-sdk"}
OFF = {"filter_enabled": False, "filter_mode": "simple", "allowed_clients": [], "default_allow": False}


@pytest.fixture
def filter_admin(admin: Api) -> Iterator[Api]:
    yield admin
    admin.ok("PUT", "/api/admin/client-filter/config", json=OFF)


def refused(api: Api, method: str, path: str, status: int, **kwargs: object) -> str:
    code, body = api.call(method, path, **kwargs)
    assert code == status, body
    assert body["code"] == status
    return str(body["message"])


def test_settings_default_off_and_refuse_unknown_clients(filter_admin: Api) -> None:
    admin = filter_admin
    config = admin.ok("GET", "/api/admin/client-filter/config")
    assert {k: config[k] for k in OFF} == OFF
    changed = admin.ok(
        "PUT",
        "/api/admin/client-filter/config",
        json={
            "filter_enabled": True,
            "filter_mode": "strict",
            "allowed_clients": ["claude-code", "claude-code"],
        },
    )
    assert changed["filter_mode"] == "strict" and changed["allowed_clients"] == ["claude-code"]
    assert changed["default_allow"] is False  # left as it was
    message = refused(
        admin, "PUT", "/api/admin/client-filter/config", 400, json={"allowed_clients": ["cursor-nope"]}
    )
    assert "cursor-nope" in message
    assert "filter_mode" in refused(
        admin, "PUT", "/api/admin/client-filter/config", 400, json={"filter_mode": "lax"}
    )
    assert admin.ok("GET", "/api/admin/client-filter/config")["allowed_clients"] == ["claude-code"]


def test_builtin_client_types_are_seeded_with_their_rules(admin: Api) -> None:
    types = {t["name"]: t for t in admin.ok("GET", "/api/admin/client-filter/client-types")}
    assert set(types) >= BUILTIN
    claude = admin.ok("GET", f"/api/admin/client-filter/client-types/{types['claude-code']['id']}")
    assert claude["is_builtin"] and claude["ua_pattern"].startswith("^claude-cli/")
    fields = {(r["rule_type"], r["field_name"]) for r in claude["rules"]}
    assert {
        ("header", "x-app"),
        ("header", "anthropic-beta"),
        ("body", "metadata.user_id"),
        ("system", ""),
    } <= fields
    rules = admin.ok("GET", f"/api/admin/client-filter/rules?client_type_id={types['codex-cli']['id']}")
    assert {r["field_name"] for r in rules} >= {"originator", "x-codex-turn-metadata"}


def test_client_type_and_rule_lifecycle(filter_admin: Api) -> None:
    admin = filter_admin
    name = f"tool-{uuid.uuid4().hex[:8]}"
    created = admin.ok(
        "POST",
        "/api/admin/client-filter/client-types",
        json={"name": name, "display_name": "My tool", "ua_pattern": r"^my-tool/\d+"},
    )
    assert created["enabled"] and not created["is_builtin"] and created["path_pattern"] == ""
    type_id = created["id"]
    assert "名称已存在" in refused(
        admin,
        "POST",
        "/api/admin/client-filter/client-types",
        400,
        json={"name": name, "display_name": "again", "ua_pattern": "x"},
    )
    rule = admin.ok(
        "POST",
        "/api/admin/client-filter/rules",
        json={"client_type_id": type_id, "rule_type": "header", "field_name": "X-Tool", "pattern": "^yes$"},
    )
    assert rule["required"] and rule["enabled"]
    updated = admin.ok("PUT", f"/api/admin/client-filter/rules/{rule['id']}", json={"required": False})
    assert updated["required"] is False and updated["pattern"] == "^yes$"
    assert admin.ok("PUT", f"/api/admin/client-filter/rules/{rule['id']}/toggle")["enabled"] is False
    assert admin.ok("PUT", f"/api/admin/client-filter/client-types/{type_id}/toggle")["enabled"] is False
    renamed = admin.ok(
        "PUT", f"/api/admin/client-filter/client-types/{type_id}", json={"display_name": "Tool"}
    )
    assert renamed["display_name"] == "Tool" and renamed["name"] == name
    admin.ok("PUT", "/api/admin/client-filter/config", json={"allowed_clients": [name]})
    reloaded = admin.ok("POST", "/api/admin/client-filter/reload")
    assert reloaded["client_types"] >= len(BUILTIN)  # the disabled one is left out
    admin.ok("DELETE", f"/api/admin/client-filter/client-types/{type_id}")
    refused(admin, "GET", f"/api/admin/client-filter/client-types/{type_id}", 404)
    refused(admin, "GET", f"/api/admin/client-filter/rules/{rule['id']}", 404)  # went with its type


def test_bad_patterns_and_references_are_refused_when_saved(admin: Api) -> None:
    message = refused(
        admin,
        "POST",
        "/api/admin/client-filter/client-types",
        400,
        json={"name": "broken", "display_name": "Broken", "ua_pattern": "^claude-cli/(unclosed"},
    )
    assert "ua_pattern" in message and "regular expression" in message
    assert "path_pattern" in refused(
        admin,
        "POST",
        "/api/admin/client-filter/client-types",
        400,
        json={"name": "broken", "display_name": "B", "ua_pattern": "x", "path_pattern": "*"},
    )
    types = admin.ok("GET", "/api/admin/client-filter/client-types")
    type_id = types[0]["id"]
    assert "pattern" in refused(
        admin,
        "POST",
        "/api/admin/client-filter/rules",
        400,
        json={"client_type_id": type_id, "rule_type": "body", "field_name": "a.b", "pattern": "[z-a]"},
    )
    assert "field_name" in refused(
        admin,
        "POST",
        "/api/admin/client-filter/rules",
        400,
        json={"client_type_id": type_id, "rule_type": "header", "pattern": ".+"},
    )
    assert "rule_type" in refused(
        admin,
        "POST",
        "/api/admin/client-filter/rules",
        400,
        json={"client_type_id": type_id, "rule_type": "cookie", "field_name": "a", "pattern": ".+"},
    )
    refused(
        admin,
        "POST",
        "/api/admin/client-filter/rules",
        404,
        json={"client_type_id": 10**12, "rule_type": "system", "pattern": ".+"},
    )
    system_rule = admin.ok(
        "POST",
        "/api/admin/client-filter/rules",
        json={"client_type_id": type_id, "rule_type": "system", "pattern": "^never-seen", "enabled": False},
    )
    assert "field_name" in refused(
        admin, "PUT", f"/api/admin/client-filter/rules/{system_rule['id']}", 400, json={"rule_type": "body"}
    )
    admin.ok("DELETE", f"/api/admin/client-filter/rules/{system_rule['id']}")
    refused(admin, "PUT", "/api/admin/client-filter/client-types/999999999/toggle", 404)
    refused(admin, "DELETE", "/api/admin/client-filter/rules/999999999", 404)


def test_users_are_refused(make_user: object) -> None:
    user = make_user()  # type: ignore[operator]
    for method, path in (
        ("GET", "/api/admin/client-filter/config"),
        ("POST", "/api/admin/client-filter/test"),
        ("GET", "/api/admin/client-filter/client-types"),
        ("GET", "/api/admin/client-filter/rules"),
    ):
        assert user.call(method, path, json={})[0] == 403


def test_key_and_package_client_lists_must_name_known_client_types(admin: Api, make_user: object) -> None:
    user = make_user()  # type: ignore[operator]
    assert "claude_code" in refused(
        user, "POST", "/api/api-keys", 400, json={"name": "k", "allowed_clients": "claude_code"}
    )
    key = user.ok("POST", "/api/api-keys", json={"name": "k", "allowed_clients": "claude-code,codex-cli"})
    assert key["allowed_clients"] == "claude-code,codex-cli"
    refused(user, "PUT", f"/api/api-keys/{key['id']}", 400, json={"allowed_clients": "cursor"})
    assert user.ok("PUT", f"/api/api-keys/{key['id']}", json={"allowed_clients": ""})["allowed_clients"] == ""
    package = {"name": f"p-{uuid.uuid4().hex[:8]}", "price": 1, "token_quota": 0, "valid_days": 30}
    refused(admin, "POST", "/api/admin/packages", 400, json={**package, "allowed_clients": "nope"})
    created = admin.ok("POST", "/api/admin/packages", json={**package, "allowed_clients": "gemini-cli"})
    refused(admin, "PUT", f"/api/admin/packages/{created['id']}", 400, json={"allowed_clients": "nope"})
    admin.ok("DELETE", f"/api/admin/packages/{created['id']}")
