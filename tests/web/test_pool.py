"""The account-pool pages in a browser: an upstream account made in the console serves a real SDK
call, account groups and their members, proxies and their test, the OAuth wizard, health checks
and error rules. Each bad field shows the API's own message next to it and keeps the form."""

from __future__ import annotations

import re
import uuid
from typing import Any

import anthropic
from playwright.sync_api import expect

from ..support import ADMIN_PASSWORD, NOWHERE, Api, free_port
from .conftest import PHONE, ConsolePage, field_error, pick

CLAUDE_MODEL = "claude-opus-4-8"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def user_key(api: Api, group_id: int) -> str:
    user = api.ok("POST", "/api/admin/users", json={"username": unique("u"), "password": "secret-pass"})
    key = api.ok(
        "POST",
        f"/api/admin/users/{user['id']}/api-keys",
        json={"name": "sdk", "account_group_id": group_id, "rate_limit": 0},
    )
    return key["key"]


def ask(relay: Any, key: str) -> str:
    client = anthropic.Anthropic(base_url=f"{relay.base_url}/claude", api_key=key, max_retries=0)
    message = client.messages.create(
        model=CLAUDE_MODEL, max_tokens=50, messages=[{"role": "user", "content": "Hello relay"}]
    )
    return message.content[0].text


def test_an_account_made_in_the_console_serves_the_anthropic_sdk(
    console: ConsolePage, console_relay: Any, admin_api: Api
) -> None:
    page = console.page
    group = admin_api.ok("POST", "/api/admin/account-groups", json={"name": unique("g")})
    console.login("admin", ADMIN_PASSWORD)
    console.goto("/admin/accounts")
    page.get_by_test_id("accounts-table").wait_for()
    page.get_by_test_id("account-create").click()
    pick(page, "account-type", "claude-ccr")
    secret = f"up-{uuid.uuid4().hex}"
    page.get_by_test_id("account-api_key").fill(secret)
    page.get_by_test_id("account-map-add").click()
    page.get_by_test_id("account-map-from-0").fill("claude-alias")
    page.get_by_test_id("account-map-to-0").fill(CLAUDE_MODEL)
    pick(page, "account-groups", group["name"])
    page.keyboard.press("Escape")

    # An empty name: the API's message next to the name, everything typed still there.
    page.get_by_test_id("account-save").click()
    message = field_error(page, "account-name")
    message.wait_for()
    expect(message).to_contain_text("at least 1 character")
    assert page.get_by_test_id("account-api_key").input_value() == secret
    console.settled()

    # A claude-ccr account without its base URL: the API names the endpoint, shown at that field.
    name = unique("ccr")
    page.get_by_test_id("account-name").fill(name)
    page.get_by_test_id("account-save").click()
    message = field_error(page, "account-base-url")
    message.wait_for()
    expect(message).to_contain_text("required for claude-ccr accounts")
    assert page.get_by_test_id("account-name").input_value() == name
    assert page.get_by_test_id("account-map-to-0").input_value() == CLAUDE_MODEL
    console.shot("account-field-error")

    page.get_by_test_id("account-base-url").fill(console_relay.mock_url)
    page.get_by_test_id("account-save").click()
    page.get_by_test_id("accounts-table").get_by_text(name, exact=True).wait_for()
    (account,) = admin_api.ok("GET", "/api/admin/accounts", params={"keyword": name})["items"]
    assert account["type"] == "claude-ccr" and account["base_url"] == console_relay.mock_url
    assert account["group_ids"] == [group["id"]]
    assert account["model_mapping"] == {"claude-alias": CLAUDE_MODEL}
    assert account["credentials"] == {"api_key": f"{secret[:4]}***{secret[-4:]}"}

    key = user_key(admin_api, group["id"])
    assert ask(console_relay, key).startswith("Hello from mock")
    console.goto("/admin/accounts")
    page.get_by_test_id(f"account-concurrency-{account['id']}").wait_for()
    console.shot("accounts")

    # Editing never shows the secret; saving with the field empty keeps it.
    page.get_by_test_id(f"account-edit-{account['id']}").click()
    assert page.get_by_test_id("account-api_key").input_value() == ""
    assert f"{secret[:4]}***{secret[-4:]}" in (
        page.get_by_test_id("account-api_key").get_attribute("placeholder") or ""
    )
    page.get_by_test_id("account-priority").locator("input").fill("7")
    page.get_by_test_id("account-save").click()
    page.get_by_test_id("account-dialog").wait_for(state="hidden")
    edited = admin_api.ok("GET", f"/api/admin/accounts/{account['id']}")
    assert edited["priority"] == 7 and edited["has_credentials"]["api_key"]
    assert ask(console_relay, key).startswith("Hello from mock")  # the stored key still serves


def test_the_account_drawer_pauses_resumes_and_probes(
    console: ConsolePage, console_relay: Any, admin_api: Api
) -> None:
    page = console.page
    name = unique("drawer")
    account = admin_api.ok(
        "POST",
        "/api/admin/accounts",
        json={
            "name": name,
            "type": "claude-official",
            "api_key": unique("k"),
            "base_url": console_relay.mock_url,
        },
    )
    console.login("admin", ADMIN_PASSWORD)
    console.goto("/admin/accounts")
    page.get_by_test_id(f"account-open-{account['id']}").click()
    drawer = page.get_by_test_id("account-drawer")
    drawer.get_by_test_id("drawer-concurrency").wait_for()
    expect(drawer.get_by_test_id("drawer-concurrency")).to_contain_text("0 / ∞")

    drawer.get_by_test_id("drawer-hold").click()
    drawer.get_by_test_id("drawer-status").filter(has_text="Paused").wait_for()
    assert admin_api.ok("GET", f"/api/admin/accounts/{account['id']}")["status"] == "unavailable"
    drawer.get_by_test_id("drawer-lift").click()
    drawer.get_by_test_id("drawer-status").filter(has_text="Valid").wait_for()
    assert admin_api.ok("GET", f"/api/admin/accounts/{account['id']}")["status"] == "valid"

    drawer.get_by_test_id("drawer-probe-model").fill(CLAUDE_MODEL)
    drawer.get_by_test_id("drawer-probe").click()
    outcome = drawer.get_by_test_id("probe-outcome")
    outcome.wait_for()
    expect(outcome).to_have_text("Success")
    drawer.get_by_test_id("drawer-limit").locator("input").fill("3")
    drawer.get_by_test_id("drawer-limit-save").click()
    drawer.get_by_test_id("drawer-concurrency").filter(has_text="0 / 3").wait_for()
    assert admin_api.ok("GET", f"/api/admin/accounts/{account['id']}")["max_concurrency"] == 3
    console.shot("account-drawer")


def test_groups_are_created_and_given_members(console: ConsolePage, admin_api: Api) -> None:
    page = console.page
    member = admin_api.ok(
        "POST",
        "/api/admin/accounts",
        json={"name": unique("member"), "type": "openai", "api_key": unique("k"), "base_url": NOWHERE},
    )
    console.login("admin", ADMIN_PASSWORD)
    console.goto("/admin/account-groups")
    page.get_by_test_id("group-create").click()
    page.get_by_test_id("group-description").fill("team A")
    page.get_by_test_id("group-save").click()
    message = field_error(page, "group-name")
    message.wait_for()
    expect(message).to_contain_text("at least 1 character")
    assert page.get_by_test_id("group-description").input_value() == "team A"
    name = unique("team")
    page.get_by_test_id("group-name").fill(name)
    page.get_by_test_id("group-save").click()
    page.get_by_test_id("groups-table").get_by_text(name, exact=True).wait_for()
    (group,) = [g for g in admin_api.ok("GET", "/api/admin/account-groups/all") if g["name"] == name]
    assert group["description"] == "team A"

    page.get_by_test_id(f"group-members-{group['id']}").click()
    page.get_by_test_id("group-add-account").click()
    page.keyboard.type(member["name"])
    page.get_by_role("option", name=re.compile(re.escape(member["name"]))).click()
    page.get_by_test_id("group-add").click()
    page.get_by_test_id("group-members-table").get_by_text(member["name"], exact=True).wait_for()
    assert admin_api.ok("GET", f"/api/admin/account-groups/{group['id']}")["account_ids"] == [member["id"]]
    console.shot("group-members")
    page.get_by_test_id(f"group-remove-{member['id']}").click()
    page.get_by_test_id("group-members-table").get_by_text(member["name"], exact=True).wait_for(
        state="detached"
    )
    assert admin_api.ok("GET", f"/api/admin/account-groups/{group['id']}")["account_ids"] == []
    page.keyboard.press("Escape")
    page.get_by_test_id(f"group-count-{group['id']}").filter(has_text="0").wait_for()
    console.shot("groups")


def test_a_proxy_is_created_and_its_test_shows_the_failure(console: ConsolePage, admin_api: Api) -> None:
    page = console.page
    port = free_port()  # nothing listens there
    console.login("admin", ADMIN_PASSWORD)
    console.goto("/admin/proxies")
    page.get_by_test_id("proxy-create").click()
    name = unique("proxy")
    page.get_by_test_id("proxy-name").fill(name)
    page.get_by_test_id("proxy-host").fill("127.0.0.1")
    page.get_by_test_id("proxy-port").fill("not-a-port")
    page.get_by_test_id("proxy-password").fill("pw-secret")
    page.get_by_test_id("proxy-save").click()
    message = field_error(page, "proxy-port")
    message.wait_for()
    expect(message).to_contain_text("integer")
    assert page.get_by_test_id("proxy-name").input_value() == name
    page.get_by_test_id("proxy-port").fill(str(port))
    page.get_by_test_id("proxy-save").click()
    page.get_by_test_id("proxies-table").get_by_text(name, exact=True).wait_for()
    (proxy,) = [p for p in admin_api.ok("GET", "/api/admin/proxy-configs") if p["name"] == name]
    assert (proxy["host"], proxy["port"], proxy["has_password"]) == ("127.0.0.1", port, True)

    page.get_by_test_id(f"proxy-test-{proxy['id']}").click()
    result = page.get_by_test_id(f"proxy-result-{proxy['id']}")
    result.get_by_text("Failed", exact=True).wait_for()
    expect(result).to_contain_text("connection failed")
    expect(result).to_contain_text("ms")
    console.settled()
    console.shot("proxies")

    page.get_by_test_id(f"proxy-edit-{proxy['id']}").click()
    assert page.get_by_test_id("proxy-password").input_value() == ""  # never shown back
    page.get_by_test_id("proxy-form-test").click()
    form_result = page.get_by_test_id("proxy-form-result")
    form_result.wait_for()
    expect(form_result).to_contain_text("Failed")


def test_the_oauth_wizard_gives_a_login_link_and_shows_a_refused_code(console: ConsolePage) -> None:
    page = console.page
    console.login("admin", ADMIN_PASSWORD)
    console.goto("/admin/accounts")
    page.get_by_test_id("account-oauth").click()
    page.get_by_test_id("oauth-name").fill("team claude")
    page.get_by_test_id("oauth-next").click()
    url = page.get_by_test_id("oauth-url")
    url.wait_for()
    assert "/oauth/authorize?" in url.inner_text() and "code_challenge=" in url.inner_text()
    page.get_by_test_id("oauth-code").fill("some-code#not-this-login")
    page.get_by_test_id("oauth-exchange").click()
    message = field_error(page, "oauth-code")
    message.wait_for()
    expect(message).to_contain_text("not this login session")
    assert page.get_by_test_id("oauth-code").input_value() == "some-code#not-this-login"
    console.shot("oauth-wizard")


def test_health_checks_and_error_rules(console: ConsolePage, console_relay: Any, admin_api: Api) -> None:
    page = console.page
    account = admin_api.ok(
        "POST",
        "/api/admin/accounts",
        json={
            "name": unique("hc"),
            "type": "claude-official",
            "api_key": unique("k"),
            "base_url": console_relay.mock_url,
        },
    )
    console.login("admin", ADMIN_PASSWORD)
    console.goto("/admin/health-check")
    page.get_by_test_id(f"health-check-{account['id']}").click()
    page.get_by_test_id(f"health-last-{account['id']}").get_by_text("Success").wait_for()
    page.get_by_test_id("health-interval").locator("input").fill("120")
    page.get_by_test_id("health-interval-save").click()
    page.get_by_text("Saved").first.wait_for()
    assert admin_api.ok("GET", "/api/admin/health-check/status")["interval"] == 120
    console.shot("health-check")

    console.goto("/admin/error-rules")
    page.get_by_test_id("rules-table").locator(".el-table__row").first.wait_for()
    page.get_by_test_id("rule-create").click()
    page.get_by_test_id("rule-name").fill("teapot")
    page.get_by_test_id("rule-keyword").fill("short and stout")
    page.get_by_test_id("rule-status-code").locator("input").fill("418")
    pick(page, "rule-target", "Overloaded")
    page.get_by_test_id("rule-save").click()
    page.get_by_test_id("rules-table").get_by_text("short and stout").wait_for()
    (rule,) = [r for r in admin_api.ok("GET", "/api/admin/error-rules") if r["name"] == "teapot"]
    assert (rule["status_code"], rule["target_status"], rule["is_default"]) == (418, "overloaded", False)
    console.shot("error-rules")

    page.get_by_role("tab", name="Messages to clients").click()
    page.get_by_test_id("rule-create").click()
    page.get_by_test_id("rule-save").click()
    message = field_error(page, "message-text")
    message.wait_for()
    expect(message).to_contain_text("at least 1 character")
    page.get_by_test_id("message-text").fill("The upstream is busy, try again soon.")
    page.get_by_test_id("rule-save").click()
    page.get_by_test_id("messages-table").get_by_text("The upstream is busy, try again soon.").wait_for()
    texts = [m["message"] for m in admin_api.ok("GET", "/api/admin/error-messages")]
    assert "The upstream is busy, try again soon." in texts


def test_the_pool_pages_at_phone_width_in_chinese(browser: Any, console_relay: Any) -> None:
    context = browser.new_context(viewport=PHONE, locale="zh-CN", is_mobile=True)
    try:
        console = ConsolePage(context.new_page(), console_relay.base_url, "phone-zh")
        page = console.page
        console.login("admin", ADMIN_PASSWORD)
        for path, heading in (
            ("/admin/accounts", "上游账户"),
            ("/admin/account-groups", "账户分组"),
            ("/admin/proxies", "出站代理"),
            ("/admin/health-check", "健康检查"),
            ("/admin/error-rules", "错误规则"),
        ):
            console.goto(path)
            page.get_by_role("heading", name=heading).wait_for()
            console.shot(path.rsplit("/", 1)[-1])
        console.goto("/admin/accounts")
        page.get_by_test_id("account-create").click()
        page.get_by_test_id("account-name").wait_for()
        console.settled()
        console.shot("account-dialog")
        assert not console.errors, console.errors
    finally:
        context.close()
