"""Admin: upstream accounts — CRUD, validation, credential masking, status, pool version."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from aiproxy.store.accounts import ACCOUNT_TYPES, CREDENTIAL_FIELDS, POOL_VERSION

from ..support import Api, RelayServer

ACCOUNTS = "/api/admin/accounts"
OPENAI_KEY = "sk-proj-Abc123secretvalue9876wxyz"
GEMINI_KEY = "AIzaSyD-gemini-secret-value-0042"


def _name(prefix: str = "acct") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def pool_version(relay: RelayServer) -> int | None:
    """The shared pool version, readable from outside the relay only when it lives in Redis."""
    from aiproxy.store.state import RedisState

    env = relay.env_overrides
    if "AIPROXY_REDIS_URL" not in env:
        return None

    async def read() -> int:
        state = RedisState.from_url(env["AIPROXY_REDIS_URL"], prefix=env["AIPROXY_REDIS_PREFIX"])
        try:
            return await state.get_int(POOL_VERSION)
        finally:
            await state.close()

    return asyncio.run(read())


def assert_bumped(relay: RelayServer, before: int | None) -> int | None:
    after = pool_version(relay)
    if before is not None:
        assert after is not None and after > before
    return after


def create_account(admin: Api, **fields: Any) -> dict[str, Any]:
    body = {"name": _name(), "type": "openai", "api_key": OPENAI_KEY, **fields}
    return admin.ok("POST", ACCOUNTS, json=body)  # type: ignore[no-any-return]


def test_account_types(admin: Api) -> None:
    assert admin.ok("GET", f"{ACCOUNTS}/types") == list(ACCOUNT_TYPES)


def test_create_shows_defaults_and_masks_credentials(admin: Api, relay: RelayServer) -> None:
    before = pool_version(relay)
    status, body = admin.post(
        ACCOUNTS,
        json={
            "name": _name(),
            "type": "openai",
            "api_key": OPENAI_KEY,
            "organization_id": "org-1",
            "model_mapping": {"gpt-4": " gpt-4o "},
            "allowed_models": "gpt-4o, gpt-4o-mini,gpt-4o",
            "remark": "primary",
        },
    )
    assert (status, body["message"]) == (201, "created")
    account = body["data"]
    assert_bumped(relay, before)
    expected = {
        "type": "openai",
        "family": "openai",
        "enabled": True,
        "status": "valid",
        "priority": 50,
        "weight": 100,
        "max_concurrency": 0,
        "base_url": "",
        "endpoint": "",
        "effective_base_url": "https://api.openai.com",
        "organization_id": "org-1",
        "model_mapping": {"gpt-4": "gpt-4o"},
        "allowed_models": "gpt-4o,gpt-4o-mini",
        "proxy_config_id": None,
        "group_ids": [],
        "remark": "primary",
        "credentials": {"api_key": "sk-p***wxyz"},
        "credentials_readable": True,
    }
    assert {k: account[k] for k in expected} == expected
    assert account["has_credentials"] == {name: name == "api_key" for name in CREDENTIAL_FIELDS}
    assert "credentials_encrypted" not in account

    gemini = create_account(admin, type="gemini", api_key=GEMINI_KEY)
    assert gemini["credentials"] == {"api_key": "AIza***0042"}
    assert gemini["effective_base_url"] == "https://generativelanguage.googleapis.com"

    # Neither key appears in any answer nor in the operation log.
    seen = json.dumps(
        [
            admin.ok("GET", f"{ACCOUNTS}/{account['id']}"),
            admin.ok("GET", f"{ACCOUNTS}/{gemini['id']}"),
            admin.ok("GET", f"{ACCOUNTS}?page_size=100"),
        ]
    )
    logs = admin.ok("GET", "/api/admin/operation-logs?resource=account&page_size=100")["items"]
    bodies = [admin.ok("GET", f"/api/admin/operation-logs/{e['id']}")["request_body"] for e in logs]
    for secret in (OPENAI_KEY, GEMINI_KEY):
        assert secret not in seen and secret not in " ".join(bodies)
    assert any('"api_key":"***"' in b for b in bodies)


def test_update_replaces_keeps_and_clears_credentials(admin: Api, relay: RelayServer) -> None:
    account = create_account(admin, api_secret="secret-part-123456")
    path = f"{ACCOUNTS}/{account['id']}"
    before = pool_version(relay)
    kept = admin.ok("PUT", path, json={"api_key": "", "priority": 10, "enabled": False})
    assert (kept["priority"], kept["enabled"], kept["credentials"]["api_key"]) == (10, False, "sk-p***wxyz")
    before = assert_bumped(relay, before)
    replaced = admin.ok("PUT", path, json={"api_key": "sk-new-key-0000000000-abcd"})
    assert replaced["credentials"] == {"api_key": "sk-n***abcd", "api_secret": "secr***3456"}
    assert replaced["name"] == account["name"] and replaced["priority"] == 10
    assert_bumped(relay, before)
    cleared = admin.ok("PUT", path, json={"clear_credentials": ["api_secret"]})
    assert cleared["credentials"] == {"api_key": "sk-n***abcd"}
    assert cleared["has_credentials"]["api_secret"] is False

    status, body = admin.put(path, json={"clear_credentials": ["api_key"]})
    assert (status, body["message"]) == (400, "api_key: required for openai accounts")
    status, body = admin.put(path, json={"clear_credentials": ["password"]})
    assert status == 400 and body["message"].startswith("clear_credentials:")
    renamed = admin.ok("PUT", path, json={"name": "renamed", "type": "claude-console"})
    assert (renamed["name"], renamed["type"], renamed["family"]) == ("renamed", "claude-console", "claude")

    assert admin.ok("DELETE", path) is None
    assert admin.get(path) == (404, {"code": 404, "message": "account not found"})


def test_validation_errors_name_the_field(admin: Api) -> None:
    def refused(body: dict[str, Any]) -> str:
        status, answer = admin.post(ACCOUNTS, json=body)
        assert status == 400, answer
        return str(answer["message"])

    good = {"name": _name(), "type": "openai", "api_key": OPENAI_KEY}
    assert refused({"type": "openai", "api_key": OPENAI_KEY}) == "name: field required"
    assert refused({**good, "type": "vertex"}).startswith("type: must be one of claude-official")
    assert refused({**good, "type": "bedrock"}) == "api_secret: required for bedrock accounts"
    bedrock = {**good, "type": "bedrock", "api_secret": "s" * 40}
    assert refused(bedrock) == "region: required for bedrock accounts"
    assert refused({**good, "type": "claude-ccr"}) == "endpoint: required for claude-ccr accounts"
    assert refused({**good, "api_key": ""}) == "api_key: required for openai accounts"
    assert refused({**good, "priority": 0}).startswith("priority:")
    assert refused({**good, "weight": 1001}).startswith("weight:")
    assert refused({**good, "max_concurrency": -1}).startswith("max_concurrency:")
    assert refused({**good, "base_url": "ftp://example.com"}) == "base_url: must be an http(s) URL"
    assert refused({**good, "endpoint": "not a url"}) == "endpoint: must be an http(s) URL"
    assert refused({**good, "base_url": "https://x.io/v1?a=1"}).startswith("base_url: must not contain")
    assert refused({**good, "model_mapping": {"a": ""}}) == "model_mapping: model names must not be empty"
    assert refused({**good, "model_mapping": ["a"]}).startswith("model_mapping:")
    assert refused({**good, "proxy_config_id": 999999}) == "proxy_config_id: proxy config not found"
    assert refused({**good, "group_ids": [999999]}) == "group_ids: account group 999999 not found"
    azure = {**good, "type": "azure-openai", "endpoint": "https://me.openai.azure.com"}
    assert refused({**azure, "api_version": "2024-10-21"}) == "deployment: required for azure-openai accounts"
    assert refused({**azure, "endpoint": "", "api_version": "v", "deployment": "d"}) == (
        "endpoint: required for azure-openai accounts"
    )


def test_base_url_and_endpoint(admin: Api) -> None:
    console = create_account(admin, type="claude-console", base_url="https://relay.example.com/v1/")
    assert console["base_url"] == "https://relay.example.com/v1"
    assert console["effective_base_url"] == "https://relay.example.com/v1"
    both = create_account(
        admin, base_url="https://ignored.example.com", endpoint="https://doc-name.example.com"
    )
    assert both["base_url"] == "https://doc-name.example.com"  # the doc's name wins
    reset = admin.ok("PUT", f"{ACCOUNTS}/{both['id']}", json={"endpoint": ""})
    assert (reset["base_url"], reset["effective_base_url"]) == ("", "https://api.openai.com")

    azure = create_account(
        admin,
        type="azure-openai",
        endpoint="https://me.openai.azure.com/",
        api_version="2024-10-21",
        deployment="gpt4o-prod",
        region="eastus",
    )
    assert (azure["base_url"], azure["deployment"], azure["region"]) == (
        "https://me.openai.azure.com",
        "gpt4o-prod",
        "eastus",
    )
    status, body = admin.put(f"{ACCOUNTS}/{azure['id']}", json={"deployment": ""})
    assert (status, body["message"]) == (400, "deployment: required for azure-openai accounts")


def test_list_filters_and_paging(admin: Api) -> None:
    tag = uuid.uuid4().hex[:6]
    group = admin.ok("POST", "/api/admin/account-groups", json={"name": f"g-{tag}"})
    a = create_account(admin, name=f"flt-{tag}-a", group_ids=[group["id"]])
    b = create_account(admin, name=f"flt-{tag}-b", type="gemini", enabled=False)
    c = create_account(admin, name=f"flt-{tag}-c", type="gemini")
    assert a["group_ids"] == [group["id"]]

    def ids(query: str) -> list[int]:
        return [x["id"] for x in admin.ok("GET", f"{ACCOUNTS}?keyword=flt-{tag}&{query}")["items"]]

    assert ids("") == [a["id"], b["id"], c["id"]]
    assert ids("type=gemini") == [b["id"], c["id"]]
    assert ids("enabled=false") == [b["id"]]
    assert ids(f"group_id={group['id']}") == [a["id"]]
    page = admin.ok("GET", f"{ACCOUNTS}?keyword=flt-{tag}&page_size=2&page=2")
    assert (page["total"], [x["id"] for x in page["items"]]) == (3, [c["id"]])
    admin.ok("PUT", f"{ACCOUNTS}/{c['id']}/status", json={"status": "invalid"})
    assert ids("status=invalid") == [c["id"]]
    assert admin.get(f"{ACCOUNTS}?status=broken")[0] == 400


def test_manual_status_and_recover(admin: Api, relay: RelayServer) -> None:
    account = create_account(admin)
    path = f"{ACCOUNTS}/{account['id']}"
    before = pool_version(relay)
    limited = admin.ok("PUT", f"{path}/status", json={"status": "rate_limited", "reason": "vendor asked"})
    assert (limited["status"], limited["status_reason"]) == ("rate_limited", "vendor asked")
    before = assert_bumped(relay, before)
    assert admin.ok("PUT", f"{path}/status", json={"status": "overloaded"})["status_reason"] == "set by admin"
    valid = admin.ok("PUT", f"{path}/status", json={"status": "valid"})
    assert (valid["status"], valid["status_reason"], valid["rate_limited_until"]) == ("valid", "", None)
    status, body = admin.put(f"{path}/status", json={"status": "broken"})
    assert status == 400 and body["message"].startswith("status:")

    admin.ok("PUT", f"{path}/status", json={"status": "invalid"})
    recovered = admin.ok("POST", f"{path}/recover")
    assert (recovered["status"], recovered["last_error"], recovered["last_error_at"]) == ("valid", "", None)
    assert_bumped(relay, before)
    actions = {e["action"] for e in admin.ok("GET", "/api/admin/operation-logs?resource=account")["items"]}
    assert {"status", "recover"} <= actions


def test_missing_accounts_are_404(admin: Api) -> None:
    missing = {"code": 404, "message": "account not found"}
    path = f"{ACCOUNTS}/999999"
    assert admin.get(path) == (404, missing)
    assert admin.put(path, json={"priority": 2}) == (404, missing)
    assert admin.delete(path) == (404, missing)
    assert admin.put(f"{path}/status", json={"status": "valid"}) == (404, missing)
    assert admin.post(f"{path}/recover") == (404, missing)


def test_deleting_an_account_removes_its_memberships(admin: Api, relay: RelayServer) -> None:
    groups = [admin.ok("POST", "/api/admin/account-groups", json={"name": _name("grp")}) for _ in range(2)]
    account = create_account(admin, group_ids=[g["id"] for g in groups])
    assert sorted(account["group_ids"]) == sorted(g["id"] for g in groups)
    moved = admin.ok("PUT", f"{ACCOUNTS}/{account['id']}", json={"group_ids": [groups[1]["id"]]})
    assert moved["group_ids"] == [groups[1]["id"]]
    assert admin.ok("GET", f"/api/admin/account-groups/{groups[0]['id']}")["account_ids"] == []

    before = pool_version(relay)
    admin.ok("DELETE", f"{ACCOUNTS}/{account['id']}")
    assert_bumped(relay, before)
    detail = admin.ok("GET", f"/api/admin/account-groups/{groups[1]['id']}")
    assert (detail["account_ids"], detail["account_count"]) == ([], 0)
