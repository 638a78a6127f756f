"""The console end to end, the way an operator meets it: sign in, create a user, an upstream account
and a key in the pages, call the relay with the key through the official SDK, then find that call in
the request logs, on the dashboard and in the user's own usage chart; and every page of the menu, for
an administrator in both languages and for a user, renders without a console error."""

from __future__ import annotations

import re
import uuid
from typing import Any
from urllib.parse import urlparse

import anthropic
from playwright.sync_api import expect

from ..support import ADMIN_PASSWORD, Api
from .conftest import ConsolePage, pick

MODEL = "claude-haiku-4-5"


def _nav_paths(page: Any) -> list[str]:
    """The menu's pages, read from the sidebar the signed-in user sees."""
    ids = page.locator("[data-test^='nav-']").evaluate_all("items => items.map(i => i.dataset.test)")
    return [f"/{test_id.removeprefix('nav-')}" for test_id in ids]


def test_a_new_user_story_from_the_pages_to_the_usage_chart(
    console: ConsolePage, console_relay: Any, admin_api: Api
) -> None:
    page = console.page
    console.login("admin", ADMIN_PASSWORD)

    # A user, made in the users page.
    username = f"story{uuid.uuid4().hex[:6]}"
    console.goto("/admin/users")
    page.get_by_test_id("user-create").click()
    page.get_by_test_id("user-username").fill(username)
    page.get_by_test_id("user-password").fill("story-pass-1")
    page.get_by_test_id("user-save").click()
    page.get_by_test_id("users-table").get_by_text(username, exact=True).wait_for()

    # An upstream account on the fake vendor, made in the accounts page.
    account_name = f"story-up-{uuid.uuid4().hex[:6]}"
    console.goto("/admin/accounts")
    page.get_by_test_id("account-create").click()
    pick(page, "account-type", "claude-ccr")
    page.get_by_test_id("account-name").fill(account_name)
    page.get_by_test_id("account-api_key").fill(f"up-{uuid.uuid4().hex}")
    page.get_by_test_id("account-base-url").fill(console_relay.mock_url)
    page.get_by_test_id("account-save").click()
    page.get_by_test_id("accounts-table").get_by_text(account_name, exact=True).wait_for()

    # A key for the user, made in the keys page: shown once.
    console.goto("/admin/api-keys")
    page.get_by_test_id("key-create").click()
    pick(page, "key-user", username)
    page.get_by_test_id("key-name").fill("story-key")
    page.get_by_test_id("key-save").click()
    shown = page.get_by_test_id("key-created-value")
    shown.wait_for()
    key = shown.inner_text().strip()
    page.get_by_test_id("key-created-close").click()

    # The user's tool calls the relay with it.
    client = anthropic.Anthropic(base_url=f"{console_relay.base_url}/claude", api_key=key, max_retries=0)
    reply = client.messages.create(
        model=MODEL, max_tokens=32, messages=[{"role": "user", "content": "Hello from the story"}]
    )
    assert reply.content[0].text.startswith("Hello from mock")
    (user,) = admin_api.ok("GET", "/api/admin/users", params={"keyword": username})["items"]

    # One request-log row for it, billed: the request-logs page shows it with the user and account.
    def logged() -> list[dict[str, Any]]:
        return admin_api.ok("GET", "/api/admin/logs", params={"user_id": user["id"]})["items"]

    for _ in range(100):  # the recorder writes in batches
        if logged():
            break
        page.wait_for_timeout(100)
    (row,) = logged()
    assert row["status"] == "success" and row["model"] == MODEL and row["total_tokens"] > 0
    console.goto(f"/admin/request-logs?user_id={user['id']}")
    table_row = page.get_by_test_id("request-logs-table").locator(".el-table__row", has_text=MODEL)
    expect(table_row).to_have_count(1)
    expect(table_row).to_contain_text(username)
    expect(table_row).to_contain_text(account_name)
    console.settled()
    console.shot("request-logs")

    # The dashboard counts it (this module's relay has served nothing else).
    console.goto("/dashboard")
    expect(page.get_by_test_id("stat-requests-value")).to_have_text("1")
    console.settled()
    console.shot("dashboard")

    # The user signs in and finds it in their own usage: the chart and the record.
    page.get_by_test_id("user-menu").click()
    page.get_by_test_id("logout").click()
    page.wait_for_url(re.compile(r".*/login"))
    console.login(username, "story-pass-1")
    assert page.url.endswith("/me/usage")
    expect(page.get_by_test_id("usage-daily-chart").locator("canvas")).to_have_count(1)
    expect(page.get_by_test_id("usage-records").locator(".el-table__row", has_text=MODEL)).to_have_count(1)
    console.settled()
    console.shot("my-usage")

    # The same page in Chinese.
    page.get_by_test_id("locale-switch").click()
    page.get_by_role("option", name="简体中文").click()
    expect(page.get_by_test_id("nav-me/usage")).to_contain_text("用量")
    console.settled()
    console.shot("my-usage-zh")


def test_every_page_renders_for_an_admin_in_both_languages_and_for_a_user(
    console: ConsolePage, admin_api: Api
) -> None:
    page = console.page
    console.login("admin", ADMIN_PASSWORD)
    admin_pages = _nav_paths(page)
    assert len(admin_pages) >= 20, admin_pages
    for locale in ("en", "zh-CN"):
        page.evaluate(f"localStorage.setItem('aiproxy.locale', '{locale}')")
        for path in admin_pages:
            console.goto(path)
            page.locator(".page").first.wait_for()
            assert urlparse(page.url).path == path, (path, page.url)  # not sent to sign-in or home
            if locale == "en":  # every page once in the screenshots (the Chinese pass only renders)
                console.settled()
                console.shot(f"{locale}{path.replace('/', '-')}")
        assert page.evaluate("document.documentElement.lang") == locale

    # A user sees only their own pages; an admin page sends them home.
    name = f"tour{uuid.uuid4().hex[:6]}"
    admin_api.ok("POST", "/api/admin/users", json={"username": name, "password": "tour-pass-1"})
    page.evaluate("localStorage.clear()")
    console.login(name, "tour-pass-1")
    user_pages = _nav_paths(page)
    assert user_pages and all(p.startswith("/me/") for p in user_pages), user_pages
    assert set(user_pages) < set(admin_pages)
    for path in user_pages:
        console.goto(path)
        page.locator(".page").first.wait_for()
        console.settled()
        console.shot(f"user{path.replace('/', '-')}")
    console.goto("/admin/users")
    page.wait_for_url(re.compile(r".*/me/usage$"))
