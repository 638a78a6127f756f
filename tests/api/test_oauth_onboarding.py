"""OAuth onboarding through the admin API of a real relay, against the fake providers of
`aiproxy mock-upstream` (the relay's OAuth settings point at it; nothing leaves 127.0.0.1).

The relay is this module's own (SQLite + in-process state) because it needs those settings;
the cross-instance test starts two more on PostgreSQL + Redis.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from aiproxy.mock_upstream import oauth as fake

from ..gateway.fake_proxies import TunnelProxy
from ..oauth_support import oauth_env
from ..support import (
    ADMIN_PASSWORD,
    Api,
    RelayServer,
    create_pg_database,
    drop_pg_database,
    mock_upstream_process,
    redis_url_or_skip,
)

GENERATE = "/api/admin/oauth/generate-url"
EXCHANGE = "/api/admin/oauth/exchange"
COOKIE = "/api/admin/oauth/cookie-auth"
ACCOUNTS = "/api/admin/accounts"
TYPE_OF = {"claude": "claude-official", "openai": "openai-responses", "gemini": "gemini"}
VENDOR_OF = {"claude": "claude", "openai": "openai", "gemini": "google"}


@pytest.fixture(scope="module")
def mock() -> Iterator[httpx.Client]:
    """The fake upstream; the client talks to its /__mock knobs."""
    with mock_upstream_process() as client:
        yield client


@pytest.fixture(autouse=True)
def _fresh_mock(mock: httpx.Client) -> None:
    assert mock.post("/__mock/oauth/reset").status_code == 200


def start_relay(data_dir: Path, env: dict[str, str]) -> RelayServer:
    server = RelayServer(data_dir=data_dir, env_overrides=env)
    server.set_configs({"captcha_enabled": "false", "login_rate_limit_max": "1000"})
    server.start()
    return server


@pytest.fixture(scope="module")
def oauth_relay(mock: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayServer]:
    server = start_relay(tmp_path_factory.mktemp("oauth"), oauth_env(str(mock.base_url).rstrip("/")))
    yield server
    server.stop()


@pytest.fixture
def admin(oauth_relay: RelayServer) -> Iterator[Api]:
    api = Api(oauth_relay.base_url)
    api.login("admin", ADMIN_PASSWORD)
    yield api
    api.close()


def browser_login(admin: Api, **body: Any) -> dict[str, Any]:
    """generate-url, then what the admin's browser does: open auth_url, log in, land on the callback."""
    started = admin.ok("POST", GENERATE, json=body)
    response = httpx.get(started["auth_url"], follow_redirects=False)
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    query = parse_qs(urlsplit(location).query)
    return {**started, "callback": location, "code": query["code"][0], "state": query["state"][0]}


def pasted(login: dict[str, Any], form: str) -> str:
    return {
        "bare": login["code"],
        "code#state": f"{login['code']}#{login['state']}",
        "url": login["callback"],
    }[form]


def last_issued(mock: httpx.Client) -> dict[str, Any]:
    return mock.get("/__mock/oauth/tokens").json()[-1]  # type: ignore[no-any-return]


def stored_credentials(relay: RelayServer, account_id: int) -> str:
    with sqlite3.connect(relay.data_dir / "aiproxy.db") as db:
        row = db.execute("SELECT credentials_encrypted FROM accounts WHERE id = ?", (account_id,)).fetchone()
    return str(row[0])


def account_count(admin: Api) -> int:
    return int(admin.ok("GET", f"{ACCOUNTS}?page_size=1")["total"])


def expires_in(account: dict[str, Any]) -> float:
    return (
        datetime.fromisoformat(account["token_expires_at"].replace("Z", "+00:00")).timestamp() - time.time()
    )


# --- each flow, end to end ---------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["bare", "code#state", "url"])
@pytest.mark.parametrize("flow", ["claude", "openai", "gemini"])
def test_flow_end_to_end(
    flow: str, form: str, admin: Api, mock: httpx.Client, oauth_relay: RelayServer
) -> None:
    kind = {"claude": "claude", "openai": "codex", "gemini": "gemini"}[flow]
    login = browser_login(admin, platform=kind)  # `platform` is accepted like `type`
    assert login["flow"] == flow and login["type"] == TYPE_OF[flow] and login["expires_in"] == 600
    auth_query = parse_qs(urlsplit(login["auth_url"]).query)
    assert auth_query["code_challenge_method"] == ["S256"] and auth_query["redirect_uri"] == [
        login["redirect_uri"]
    ]
    status, body = admin.post(EXCHANGE, json={"session_id": login["session_id"], "code": pasted(login, form)})
    assert status == 201, body
    account = body["data"]
    issued = last_issued(mock)
    assert account["type"] == TYPE_OF[flow] and account["status"] == "valid"
    # Masked in the answer, encrypted in the database.
    assert account["credentials"]["access_token"] != issued["access_token"]
    assert "***" in account["credentials"]["access_token"]
    assert account["has_credentials"]["refresh_token"] is True
    column = stored_credentials(oauth_relay, account["id"])
    assert column.startswith("v1:") and issued["access_token"] not in column
    assert issued["refresh_token"] not in column
    assert abs(expires_in(account) - fake.DEFAULT_EXPIRES_IN[VENDOR_OF[flow]]) < 60
    facts = account["extra"]["oauth"]
    assert facts["provider"] == flow and facts["scopes"] and facts["onboarded_at"]
    if flow == "claude":
        assert facts["email"] == fake.CLAUDE_EMAIL and facts["account_uuid"] == fake.CLAUDE_ACCOUNT_UUID
        assert facts["organization_uuid"] == account["organization_id"] == fake.CHAT_ORG["uuid"]
        assert facts["organization_name"] == fake.CHAT_ORG["name"] and facts["setup_token"] is False
        assert account["name"] == f"Claude {fake.CLAUDE_EMAIL}"
    elif flow == "openai":
        assert account["has_credentials"]["id_token"] is True
        assert facts["chatgpt_account_id"] == fake.CHATGPT_ACCOUNT_ID
        assert facts["chatgpt_user_id"] == fake.CHATGPT_USER_ID and facts["plan_type"] == fake.CHATGPT_PLAN
        assert facts["email"] == fake.OPENAI_EMAIL
    else:
        assert facts["email"] == fake.GOOGLE_EMAIL
        assert (facts["project_id"], facts["tier"]) == (fake.ASSIGNED_PROJECT, "standard-tier")
    # The session was single-use.
    status, body = admin.post(EXCHANGE, json={"session_id": login["session_id"], "code": login["code"]})
    assert status == 400 and "already used" in body["message"]


def test_claude_console_setup_token(admin: Api, mock: httpx.Client) -> None:
    login = browser_login(admin, type="claude-console", setup_token=True, name="ignored here")
    assert parse_qs(urlsplit(login["auth_url"]).query)["scope"] == ["user:inference"]
    account = admin.ok(
        "POST", EXCHANGE, json={"session_id": login["session_id"], "code": login["code"], "name": "cc"}
    )
    assert (account["type"], account["name"]) == ("claude-console", "cc")
    assert account["extra"]["oauth"]["setup_token"] is True
    assert account["extra"]["oauth"]["scopes"] == ["user:inference"]
    assert account["has_credentials"]["refresh_token"] is False
    assert expires_in(account) > 364 * 86400


def test_gemini_onboarding_and_own_project(admin: Api, mock: httpx.Client) -> None:
    mock.post("/__mock/oauth/config", json={"code_assist": {"mode": "onboard", "pending_polls": 1}})
    login = browser_login(admin, type="gemini")
    account = admin.ok("POST", EXCHANGE, json={"session_id": login["session_id"], "code": login["code"]})
    assert (account["extra"]["oauth"]["project_id"], account["extra"]["oauth"]["tier"]) == (
        fake.FREE_PROJECT,
        "free-tier",
    )
    # A tier that needs the user's own project: asked for, then finished without a second login.
    mock.post("/__mock/oauth/config", json={"code_assist": "user-project"})
    login = browser_login(admin, type="gemini")
    before = account_count(admin)
    status, body = admin.post(EXCHANGE, json={"session_id": login["session_id"], "code": login["code"]})
    assert status == 400 and body["message"].startswith("project_id:")
    assert account_count(admin) == before
    account = admin.ok("POST", EXCHANGE, json={"session_id": login["session_id"], "project_id": "my-gcp-1"})
    assert account["extra"]["oauth"]["project_id"] == "my-gcp-1"
    assert mock.get("/__mock/oauth/stats").json()["google"]["authorization_code"] == 2
    # project_id given up front, at generate-url.
    login = browser_login(admin, type="gemini", project_id="my-gcp-2")
    account = admin.ok("POST", EXCHANGE, json={"session_id": login["session_id"], "code": login["code"]})
    assert account["extra"]["oauth"]["project_id"] == "my-gcp-2"


# --- proxies ----------------------------------------------------------------------------------------------


def test_vendor_calls_go_through_the_chosen_proxy(admin: Api, mock: httpx.Client) -> None:
    mock_host = f"127.0.0.1:{mock.base_url.port}"

    def proxy_config(proxy: TunnelProxy) -> dict[str, Any]:
        body = {"name": f"p-{uuid.uuid4().hex[:6]}", "type": "http", "host": "127.0.0.1", "port": proxy.port}
        return admin.ok("POST", "/api/admin/proxy-configs", json=body)  # type: ignore[no-any-return]

    with TunnelProxy("http") as chosen, TunnelProxy("http") as moved, TunnelProxy("http") as default:
        config = proxy_config(chosen)
        login = browser_login(admin, type="gemini", proxy_config_id=config["id"])
        account = admin.ok("POST", EXCHANGE, json={"session_id": login["session_id"], "code": login["code"]})
        assert account["proxy_config_id"] == config["id"]
        assert chosen.seen.targets and set(chosen.seen.targets) == {mock_host}
        assert {c["endpoint"] for c in mock.get("/__mock/oauth/calls").json()} >= {
            "authorization_code",
            "loadCodeAssist",
        }
        # A re-login without proxy_config_id uses the account's proxy (moved to another port, so a
        # kept-alive connection to the first one cannot hide whether it was used).
        admin.ok("PUT", f"/api/admin/proxy-configs/{config['id']}", json={"port": moved.port})
        login = browser_login(admin, type="gemini", account_id=account["id"])
        admin.ok("POST", EXCHANGE, json={"session_id": login["session_id"], "code": login["code"]})
        assert moved.seen.targets and set(moved.seen.targets) == {mock_host}
        # Without either, the default proxy (the cookie flow here).
        fallback = proxy_config(default)
        admin.ok("PUT", f"/api/admin/proxy-configs/{fallback['id']}/default")
        try:
            account = admin.ok("POST", COOKIE, json={"cookie": "sk-ant-sid01-viadefault"})
            assert default.seen.targets and set(default.seen.targets) == {mock_host}
            assert account["proxy_config_id"] is None  # it keeps following the default
        finally:
            admin.ok("DELETE", "/api/admin/proxy-configs/default")
        # A disabled proxy is refused rather than silently bypassed.
        admin.ok("PUT", f"/api/admin/proxy-configs/{config['id']}/toggle")
        status, body = admin.post(GENERATE, json={"type": "claude", "proxy_config_id": config["id"]})
        assert status == 400 and "disabled" in body["message"]


# --- re-login ---------------------------------------------------------------------------------------------


def test_relogin_replaces_only_the_tokens(admin: Api, mock: httpx.Client, oauth_relay: RelayServer) -> None:
    login = browser_login(admin, type="openai")
    first = admin.ok("POST", EXCHANGE, json={"session_id": login["session_id"], "code": login["code"]})
    first_token = last_issued(mock)["access_token"]
    group = admin.ok("POST", "/api/admin/account-groups", json={"name": f"g-{uuid.uuid4().hex[:8]}"})
    admin.ok(
        "PUT",
        f"{ACCOUNTS}/{first['id']}",
        json={"name": "my codex", "priority": 7, "group_ids": [group["id"]], "remark": "keep me"},
    )
    admin.ok("PUT", f"{ACCOUNTS}/{first['id']}/status", json={"status": "token_expired", "reason": "refused"})
    before = account_count(admin)
    # account_id in the exchange body this time (it may also come with generate-url).
    login = browser_login(admin, type="openai")
    status, body = admin.post(
        EXCHANGE,
        json={"session_id": login["session_id"], "code": login["callback"], "account_id": first["id"]},
    )
    assert status == 200, body
    again = body["data"]
    new_token = last_issued(mock)["access_token"]
    assert account_count(admin) == before and again["id"] == first["id"]
    assert (again["name"], again["priority"], again["remark"]) == ("my codex", 7, "keep me")
    assert again["group_ids"] == [group["id"]] and again["status"] == "valid"
    assert again["extra"]["oauth"]["onboarded_at"] > first["extra"]["oauth"]["onboarded_at"]
    column = stored_credentials(oauth_relay, first["id"])
    assert new_token not in column and first_token not in column
    assert again["credentials"]["refresh_token"] != first["credentials"]["refresh_token"]
    # Another flow's account cannot be re-logged in by this one.
    status, body = admin.post(GENERATE, json={"type": "claude", "account_id": first["id"]})
    assert status == 400 and "openai-responses" in body["message"]


# --- refusals ---------------------------------------------------------------------------------------------


def test_bad_input_is_a_400_and_stores_nothing(admin: Api, mock: httpx.Client) -> None:
    before = account_count(admin)
    status, body = admin.post(GENERATE, json={"type": "bard"})
    assert status == 400 and "claude, claude-official, claude-console, openai" in body["message"]
    status, body = admin.post(GENERATE, json={})
    assert status == 400 and body["message"].startswith("type:")
    assert admin.post(GENERATE, json={"type": "codex", "setup_token": True})[0] == 400
    status, body = admin.post(GENERATE, json={"type": "claude", "proxy_config_id": 987654})
    assert status == 400 and "proxy config not found" in body["message"]
    status, body = admin.post(GENERATE, json={"type": "claude", "account_id": 987654})
    assert status == 404 and body["message"] == "account not found"
    status, body = admin.post(EXCHANGE, json={"session_id": "no-such-session", "code": "abc"})
    assert status == 400 and "unknown or expired" in body["message"]

    # A vendor refusal keeps the session: the admin may paste again.
    login = browser_login(admin, type="claude")
    error = {"error": "invalid_grant", "error_description": "Invalid 'code' in request."}
    mock.post("/__mock/oauth/config", json={"fail": {"status": 400, "body": error, "vendor": "claude"}})
    status, body = admin.post(EXCHANGE, json={"session_id": login["session_id"], "code": login["code"]})
    assert status == 400 and "invalid_grant: Invalid 'code' in request." in body["message"]
    assert account_count(admin) == before
    status, body = admin.post(EXCHANGE, json={"session_id": login["session_id"], "code": "two words"})
    assert status == 400 and body["message"].startswith("code:")
    status, body = admin.post(
        EXCHANGE, json={"session_id": login["session_id"], "type": "gemini", "code": "x"}
    )
    assert status == 400 and "claude login" in body["message"]
    admin.ok("POST", EXCHANGE, json={"session_id": login["session_id"], "code": login["code"]})

    # A state that is not the session's burns it.
    login = browser_login(admin, type="claude")
    status, body = admin.post(
        EXCHANGE, json={"session_id": login["session_id"], "code": f"{login['code']}#forged"}
    )
    assert status == 400 and "state" in body["message"]
    status, body = admin.post(EXCHANGE, json={"session_id": login["session_id"], "code": login["code"]})
    assert status == 400 and "already used" in body["message"]
    # The vendor itself says no to the login (callback with an error).
    login = browser_login(admin, type="openai")
    denied = "http://localhost:1455/auth/callback?error=access_denied&error_description=User+cancelled"
    status, body = admin.post(EXCHANGE, json={"session_id": login["session_id"], "code": denied})
    assert status == 400 and "access_denied: User cancelled" in body["message"]
    assert account_count(admin) == before + 1


def test_users_are_refused(admin: Api, oauth_relay: RelayServer) -> None:
    name = f"u{uuid.uuid4().hex[:10]}"
    admin.ok("POST", "/api/admin/users", json={"username": name, "password": "secret-pass"})
    user = Api(oauth_relay.base_url)
    user.login(name, "secret-pass")
    for path in (GENERATE, EXCHANGE, COOKIE):
        status, body = user.post(path, json={"type": "claude", "session_id": "x", "code": "y", "cookie": "z"})
        assert (status, body["code"]) == (403, 403), path
    user.close()


# --- cookie flow ------------------------------------------------------------------------------------------


def test_cookie_flow(admin: Api, mock: httpx.Client, oauth_relay: RelayServer) -> None:
    before = account_count(admin)
    cases = [
        ("sk-ant-sid01-expired", "invalid or expired"),
        ("sk-ant-sid01-cloudflare", "Cloudflare"),
        ("sk-ant-sid01-challenge", "Cloudflare"),
        ("sk-ant-sid01-nochat", "chat capability"),
    ]
    for cookie, words in cases:
        status, body = admin.post(COOKIE, json={"cookie": cookie})
        assert status == 400 and words in body["message"], (cookie, body)
    assert account_count(admin) == before
    status, body = admin.post(
        COOKIE, json={"session_key": "sessionKey=sk-ant-sid01-good", "name": "via cookie"}
    )
    assert status == 201, body
    account = body["data"]
    assert (account["type"], account["name"]) == ("claude-official", "via cookie")
    assert account["organization_id"] == fake.CHAT_ORG["uuid"]
    assert "org:create_api_key" not in account["extra"]["oauth"]["scopes"]
    assert issued_token_hidden(oauth_relay, mock, account["id"])
    calls = mock.get("/__mock/oauth/calls").json()
    orgs_call = next(
        c for c in calls if c["endpoint"] == "organizations" and "good" in c["headers"]["cookie"]
    )
    assert orgs_call["headers"]["cookie"] == "sessionKey=sk-ant-sid01-good"
    assert orgs_call["headers"]["user-agent"].startswith("Mozilla/5.0")
    assert admin.post(COOKIE, json={})[0] == 400


def issued_token_hidden(relay: RelayServer, mock: httpx.Client, account_id: int) -> bool:
    issued = last_issued(mock)
    column = stored_credentials(relay, account_id)
    return column.startswith("v1:") and issued["access_token"] not in column


# --- operation logs ---------------------------------------------------------------------------------------


def test_operation_logs_hold_no_secret(admin: Api, mock: httpx.Client) -> None:
    login = browser_login(admin, type="claude")
    admin.ok("POST", EXCHANGE, json={"session_id": login["session_id"], "code": login["callback"]})
    cookie = f"sk-ant-sid01-{uuid.uuid4().hex}"
    admin.ok("POST", COOKIE, json={"cookie": cookie})
    admin.post(EXCHANGE, json={"session_id": login["session_id"], "code": login["code"]})  # refused: used
    secrets = [login["code"], login["state"], cookie]
    secrets += [
        t[k] for t in mock.get("/__mock/oauth/tokens").json() for k in ("access_token", "refresh_token")
    ]
    listed = admin.ok("GET", "/api/admin/operation-logs?resource=oauth&page_size=100")["items"]
    logs = [admin.ok("GET", f"/api/admin/operation-logs/{entry['id']}") for entry in listed]
    assert len(logs) >= 4
    text = repr(logs)
    for secret in secrets:
        assert secret not in text
    assert any('"code":"***"' in entry["request_body"] for entry in logs)
    assert any('"cookie":"***"' in entry["request_body"] for entry in logs)


# --- one login, two instances -----------------------------------------------------------------------------


def test_a_login_started_on_one_instance_finishes_on_another(mock: httpx.Client, tmp_path: Path) -> None:
    env = {
        **oauth_env(str(mock.base_url).rstrip("/")),
        "AIPROXY_REDIS_URL": redis_url_or_skip(),
        "AIPROXY_REDIS_PREFIX": f"aiproxy-test:{uuid.uuid4().hex[:8]}:",
        # Instances of one deployment share the secret key (it encrypts credentials and sessions).
        "AIPROXY_SECRET_KEY": uuid.uuid4().hex,
    }
    url, name = create_pg_database()
    env["AIPROXY_DATABASE_URL"] = url
    first = second = None
    try:
        first = start_relay(tmp_path / "a", env)
        second = start_relay(tmp_path / "b", env)
        one, two = Api(first.base_url), Api(second.base_url)
        one.login("admin", ADMIN_PASSWORD)
        two.login("admin", ADMIN_PASSWORD)
        login = browser_login(one, type="codex")
        account = two.ok(
            "POST", EXCHANGE, json={"session_id": login["session_id"], "code": login["callback"]}
        )
        assert account["extra"]["oauth"]["chatgpt_account_id"] == fake.CHATGPT_ACCOUNT_ID
        assert one.ok("GET", f"{ACCOUNTS}/{account['id']}")["id"] == account["id"]
        status, body = one.post(EXCHANGE, json={"session_id": login["session_id"], "code": login["code"]})
        assert status == 400 and "already used" in body["message"]
        one.close()
        two.close()
    finally:
        for server in (first, second):
            if server is not None:
                server.stop()
        drop_pg_database(name)


def test_audit_masks_codes_but_not_status_codes() -> None:
    from aiproxy.api.audit import mask_secrets

    masked = mask_secrets(
        {"code": "abc#def", "status_code": 429, "cookie": "k", "setup_token": True, "name": "n"}
    )
    assert masked == {"code": "***", "status_code": 429, "cookie": "***", "setup_token": "***", "name": "n"}


def test_pasted_forms() -> None:
    from aiproxy.oauth.errors import OAuthError
    from aiproxy.oauth.pkce import Pasted, parse_pasted

    assert parse_pasted("  abc  ") == Pasted("abc", None)
    assert parse_pasted("abc#st") == Pasted("abc", "st")
    assert parse_pasted("https://x/cb?code=abc&state=st") == Pasted("abc", "st")
    assert parse_pasted("https://x/cb#code=abc&state=st") == Pasted("abc", "st")
    assert parse_pasted("code=abc&state=st") == Pasted("abc", "st")
    assert parse_pasted("https://x/cb?code=abc%23st") == Pasted("abc", "st")
    for bad in ("", "a b", "https://x/cb?state=st", "x" * 5000):
        with pytest.raises(OAuthError):
            parse_pasted(bad)
