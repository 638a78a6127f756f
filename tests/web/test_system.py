"""The console's system pages in a browser: runtime settings, the live cache, the client filter,
the monitor and the system-log viewer, each against a real relay.

This module runs its own relay (instead of the shared one) at log level `info` with a server-log
root of its own, so the log viewer has app log files and whitelisted server logs to show.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from ..conftest import running_relay
from ..support import ADMIN_PASSWORD, Api, mock_upstream_process
from .conftest import PHONE, ConsolePage

FIXTURES = Path(__file__).parents[1] / "fixtures" / "client-requests.jsonl"
SYSLOG_LINE = "Dec 15 10:00:00 host sshd[42]: Accepted publickey for ops from 192.0.2.1"


@pytest.fixture(scope="module")
def console_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The relay of this module: info-level app logs and a server-log root holding a syslog."""
    base = tmp_path_factory.mktemp("system")
    server_logs = base / "var-log"
    server_logs.mkdir()
    (server_logs / "syslog").write_text(SYSLOG_LINE + "\n")
    env = {"AIPROXY_LOG_LEVEL": "info", "AIPROXY_SERVER_LOG_DIR": str(server_logs)}
    with mock_upstream_process() as mock, running_relay("sqlite", base / "data", env=env) as relay:
        relay.mock_url = str(mock.base_url).rstrip("/")  # type: ignore[attr-defined]
        yield relay


def _error_of(console: ConsolePage, test_id: str) -> Any:
    """The form item's error message of the field marked `test_id`."""
    page = console.page
    return page.locator(".el-form-item", has=page.get_by_test_id(test_id)).locator(".el-form-item__error")


def _confirm(console: ConsolePage) -> None:
    console.page.locator(".el-message-box__btns .el-button--primary").click()


# --- runtime settings ----------------------------------------------------------------------------


def test_settings_are_saved_per_item_and_per_category_and_a_refusal_stays_by_its_field(
    console: ConsolePage, admin_api: Api
) -> None:
    page = console.page
    console.login("admin", ADMIN_PASSWORD)
    console.goto("/admin/configs")
    page.get_by_test_id("config-tab-system").wait_for()
    console.shot("configs")

    # A number below its minimum: the API's message next to the field, the typed value kept.
    page.get_by_test_id("config-tab-security").click()
    ttl = page.get_by_test_id("config-captcha_ttl").locator("input")
    ttl.fill("-5")
    page.get_by_test_id("config-save-captcha_ttl").click()
    error = _error_of(console, "config-captcha_ttl")
    error.wait_for()
    expect(error).to_contain_text("config 'captcha_ttl' must be >= 30")
    assert ttl.input_value() == "-5"
    assert admin_api.ok("GET", "/api/admin/configs/category/security")["captcha_ttl"] == 300
    console.shot("configs-field-error")

    ttl.fill("600")
    page.get_by_test_id("config-save-captcha_ttl").click()
    error.wait_for(state="detached")
    page.get_by_test_id("config-item-captcha_ttl").get_by_text("Changed", exact=True).wait_for()
    assert admin_api.ok("GET", "/api/admin/configs/category/security")["captcha_ttl"] == 600

    # Two changes in one category saved together: a text and a switch.
    page.get_by_test_id("config-tab-system").click()
    name = f"Relay {uuid.uuid4().hex[:6]}"
    page.get_by_test_id("config-site_name").locator("input").fill(name)
    page.get_by_test_id("config-allow_register").locator(".el-switch").click()
    save_all = page.get_by_test_id("config-save-category-system")
    expect(save_all).to_contain_text("(2)")
    save_all.click()
    save_all.filter(has_text="(0)").wait_for()  # counted down as each was saved
    system = admin_api.ok("GET", "/api/admin/configs/category/system")
    assert system["site_name"] == name and system["allow_register"] is False

    # The reload action bumps the shared version.
    before = admin_api.ok("GET", "/api/admin/configs/sync/status")["shared_version"]
    page.get_by_test_id("config-sync").click()
    page.get_by_test_id("config-sync-status").filter(has_text=str(before + 1)).wait_for()
    assert admin_api.ok("GET", "/api/admin/configs/sync/status")["shared_version"] == before + 1

    for key, value in (("captcha_ttl", 300), ("site_name", "AI Proxy"), ("allow_register", True)):
        admin_api.ok("PUT", "/api/admin/configs", json={"key": key, "value": value})


# --- live cache ----------------------------------------------------------------------------------


def _sticky_request(relay: Any, admin_api: Api) -> int:
    """A proxied request with a session id, to a group of two accounts on the fake upstream (with
    one there is nothing to stick to): it leaves a sticky session behind. Returns the API key id."""
    tag = uuid.uuid4().hex[:8]
    group = admin_api.ok("POST", "/api/admin/account-groups", json={"name": f"g-{tag}"})
    for n in (1, 2):
        admin_api.ok(
            "POST",
            "/api/admin/accounts",
            json={
                "name": f"acc-{tag}-{n}",
                "type": "claude-official",
                "api_key": f"up-{tag}-{n}",
                "base_url": relay.mock_url,
                "group_ids": [group["id"]],
            },
        )
    key = admin_api.ok("POST", "/api/api-keys", json={"name": f"k-{tag}"})
    admin_api.ok("PUT", f"/api/admin/api-keys/{key['id']}", json={"account_group_id": group["id"]})
    response = httpx.post(
        f"{relay.base_url}/claude/v1/messages",
        headers={"x-api-key": key["key"], "x-session-id": f"conversation-{tag}"},
        json={"model": "claude-opus-4-8", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return key["id"]  # type: ignore[no-any-return]


def _session_of(admin_api: Api, key_id: int) -> dict[str, Any]:
    """The key's sticky session, once the relay has bound it (after the request was logged)."""
    deadline = time.monotonic() + 10
    while True:
        items = admin_api.ok("GET", "/api/admin/cache/sessions", params={"api_key_id": key_id})["items"]
        if items:
            (session,) = items
            return session  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, "the request left no sticky session"
        time.sleep(0.05)


def test_the_cache_page_shows_a_real_sticky_session_and_clears_it(
    console: ConsolePage, admin_api: Api, console_relay: Any
) -> None:
    page = console.page
    key_id = _sticky_request(console_relay, admin_api)
    session = _session_of(admin_api, key_id)
    console.login("admin", ADMIN_PASSWORD)
    console.goto("/admin/cache")
    sessions = admin_api.ok("GET", "/api/admin/cache/stats")["sessions"]
    expect(page.get_by_test_id("cache-stat-sessions").locator(".value")).to_have_text(str(sessions))
    row = page.get_by_test_id("cache-sessions").locator("tr", has_text=session["account_name"])
    row.wait_for()
    expect(row).to_contain_text("admin")
    console.shot("cache")

    page.get_by_role("tab", name="Users").click()
    page.get_by_test_id("cache-users").get_by_text("admin", exact=True).wait_for()
    page.get_by_role("tab", name="Accounts").click()
    page.get_by_test_id("cache-accounts").get_by_text(session["account_name"]).wait_for()

    # Drop that one session.
    page.get_by_role("tab", name="Sticky sessions").click()
    page.get_by_test_id(f"cache-session-delete-{session['session_id']}").click()
    row.wait_for(state="detached")
    assert admin_api.ok("GET", "/api/admin/cache/sessions", params={"api_key_id": key_id})["total"] == 0

    # Another request, then everything cleared (after the confirmation).
    _session_of(admin_api, _sticky_request(console_relay, admin_api))
    page.get_by_test_id("cache-refresh").click()
    page.get_by_test_id("cache-stat-sessions").locator(".value").filter(
        has_text=re.compile(r"^[1-9]")
    ).wait_for()
    page.get_by_test_id("cache-clear-all").click()
    _confirm(console)
    page.get_by_test_id("cache-stat-sessions").locator(".value").filter(
        has_text=re.compile(r"^0$")
    ).wait_for()
    assert admin_api.ok("GET", "/api/admin/cache/stats")["sessions"] == 0

    # The cache settings refuse a lifetime of 0 next to the field, keeping it.
    page.get_by_role("tab", name="Settings").click()
    ttl = page.get_by_test_id("cache-config-session_ttl").locator("input")
    ttl.fill("0")
    page.get_by_test_id("cache-config-save").click()
    error = _error_of(console, "cache-config-session_ttl")
    error.wait_for()
    expect(error).to_contain_text("must be >= 1")
    assert ttl.input_value() == "0"
    console.shot("cache-config-error")
    ttl.fill("45")
    page.get_by_test_id("cache-config-save").click()
    error.wait_for(state="detached")
    assert admin_api.ok("GET", "/api/admin/cache/config")["session_ttl"] == 45
    admin_api.ok("PUT", "/api/admin/cache/config", json={"session_ttl": 30})


# --- client filter -------------------------------------------------------------------------------


def _claude_code_request() -> dict[str, Any]:
    """A request Claude Code really sent (recorded in the gateway tests' fixtures)."""
    for line in FIXTURES.read_text().splitlines():
        record = json.loads(line)
        if record["headers"].get("user-agent", "").startswith("claude-cli/") and record["method"] == "POST":
            return record  # type: ignore[no-any-return]
    raise AssertionError("no Claude Code request in the fixtures")


def test_the_client_filter_test_tool_recognises_claude_code_and_types_are_edited(
    console: ConsolePage, admin_api: Api
) -> None:
    page = console.page
    console.login("admin", ADMIN_PASSWORD)
    console.goto("/admin/client-filter")
    page.get_by_test_id("types-table").get_by_text("claude-code", exact=True).wait_for()
    console.shot("client-filter")

    # Claude Code as it really calls, judged strictly: recognised, rules and all.
    record = _claude_code_request()
    headers = {k: v for k, v in record["headers"].items() if k not in ("x-api-key", "host", "content-length")}
    page.get_by_role("tab", name="Test a request").click()
    page.get_by_test_id("test-headers").fill(json.dumps(headers, indent=1))
    page.get_by_test_id("test-body").fill(json.dumps(record["body"]))
    page.get_by_test_id("test-path").fill("/claude/v1/messages")
    page.get_by_test_id("test-mode").click()
    page.get_by_role("option", name="Strict").click()
    page.get_by_test_id("test-run").click()
    client = page.get_by_test_id("test-client")
    client.filter(has_text="claude-code").wait_for()
    expect(page.get_by_test_id("test-result")).to_contain_text("Allowed")
    console.shot("client-filter-test")

    # The same user agent without the CLI's headers is not Claude Code in strict mode.
    page.get_by_test_id("test-headers").fill(f"user-agent: {headers['user-agent']}")
    page.get_by_test_id("test-body").fill("")
    page.get_by_test_id("test-run").click()
    client.filter(has_text="No client type matches").wait_for()
    expect(page.get_by_test_id("test-reason")).to_contain_text("header x-app missing")

    # Pasted headers that are not headers: said next to the field, nothing sent.
    page.get_by_test_id("test-headers").fill("this is not a header")
    page.get_by_test_id("test-run").click()
    expect(_error_of(console, "test-headers")).to_contain_text("Not headers")

    # A client type with a bad pattern: the API's message next to it; fixed, it is created.
    page.get_by_role("tab", name="Client types").click()
    page.get_by_test_id("type-create").click()
    name = f"tool-{uuid.uuid4().hex[:6]}"
    page.get_by_test_id("type-name").fill(name)
    page.get_by_test_id("type-display-name").fill("In-house tool")
    page.get_by_test_id("type-ua").fill("^in-house/(")
    page.get_by_test_id("type-save").click()
    error = _error_of(console, "type-ua")
    error.wait_for()
    expect(error).to_contain_text("invalid regular expression")
    assert page.get_by_test_id("type-name").input_value() == name
    console.shot("client-filter-type-error")
    page.get_by_test_id("type-ua").fill(r"^in-house/\d+")
    page.get_by_test_id("type-save").click()
    page.get_by_test_id("types-table").get_by_text(name, exact=True).wait_for()
    listed = admin_api.ok("GET", "/api/admin/client-filter/client-types")
    (created,) = [t for t in listed if t["name"] == name]
    assert created["ua_pattern"] == r"^in-house/\d+" and created["enabled"] is True
    page.get_by_test_id(f"type-toggle-{name}").click()
    page.get_by_test_id(f"type-toggle-{name}").and_(page.locator(".is-checked")).wait_for(state="detached")
    assert admin_api.ok("GET", f"/api/admin/client-filter/client-types/{created['id']}")["enabled"] is False
    admin_api.ok("DELETE", f"/api/admin/client-filter/client-types/{created['id']}")


# --- monitor -------------------------------------------------------------------------------------


def test_the_monitor_shows_the_relays_figures(console: ConsolePage, admin_api: Api) -> None:
    page = console.page
    console.login("admin", ADMIN_PASSWORD)
    console.goto("/admin/monitor")
    cpu = page.get_by_test_id("gauge-cpu")
    cpu.wait_for()
    assert re.search(r"\d+(\.\d)?%", cpu.inner_text())
    assert re.search(r"\d+(\.\d)?%", page.get_by_test_id("gauge-memory").inner_text())
    users = admin_api.ok("GET", "/api/admin/monitor/users")
    expect(page.get_by_test_id("users-total").locator(".value")).to_have_text(str(users["total"]))
    expect(page.get_by_test_id("monitor-database")).to_contain_text("sqlite")
    expect(page.get_by_test_id("monitor-database").locator("canvas")).to_have_count(1)  # rows by table
    # A second sample draws CPU and memory over time.
    page.get_by_test_id("monitor-refresh").click()
    page.get_by_test_id("monitor-system").locator("canvas").wait_for()
    console.shot("monitor")
    page.get_by_test_id("monitor-accounts").scroll_into_view_if_needed()
    expect(page.get_by_test_id("accounts-total").locator(".value")).to_have_text(
        str(admin_api.ok("GET", "/api/admin/monitor/accounts")["total"])
    )
    console.shot("monitor-lower")


# --- system logs ---------------------------------------------------------------------------------


def _failed_login(relay: Any, name: str) -> None:
    """A refused login: one WARNING line in today's auth log naming `name`."""
    response = httpx.post(
        f"{relay.base_url}/api/auth/login", json={"username": name, "password": "not-the-password"}
    )
    assert response.status_code in (400, 401), response.text


def test_system_logs_list_read_follow_and_download_a_log_file(
    console: ConsolePage, console_relay: Any
) -> None:
    page = console.page
    first = f"nobody-{uuid.uuid4().hex[:8]}"
    _failed_login(console_relay, first)
    auth_log = f"auth-{datetime.now(UTC):%Y-%m-%d}.log"
    console.login("admin", ADMIN_PASSWORD)
    console.goto("/admin/system-logs")
    files = page.get_by_test_id("logs-files")
    files.get_by_text(auth_log, exact=True).wait_for()
    expect(files.get_by_text(re.compile(r"^http-\d{4}-\d{2}-\d{2}\.log$"))).to_have_count(1)

    # Read it, then only the lines with a keyword.
    page.get_by_test_id(f"logs-file-{auth_log}").click()
    lines = page.get_by_test_id("logs-lines")
    lines.get_by_text(first).wait_for()
    _failed_login(console_relay, "someone-else")
    page.get_by_test_id("logs-keyword").fill(first)
    page.get_by_test_id("logs-keyword").press("Enter")
    # The lines read before the filter stay until the filtered page arrives: wait for them to go.
    expect(lines.locator(".log-line").filter(has_not_text=first)).to_have_count(0)
    shown = lines.locator(".log-line").all_inner_texts()
    assert shown and all(first in line for line in shown)
    console.shot("system-logs")

    # Follow the end: a new line appears without touching anything.
    tails: list[str] = []
    page.on("request", lambda r: tails.append(r.url) if "/system-logs/tail" in r.url else None)
    page.get_by_test_id("logs-tail").click()
    page.get_by_test_id("logs-tail-note").wait_for()
    second = f"nobody-{uuid.uuid4().hex[:8]}"
    _failed_login(console_relay, second)
    lines.get_by_text(second).wait_for()
    assert len(tails) >= 2  # polled, not loaded once
    console.shot("system-logs-tail")

    # Downloaded with the admin's token, under the file's name.
    with page.expect_download() as downloading:
        page.get_by_test_id("logs-download").click()
    download = downloading.value
    assert download.suggested_filename == auth_log
    assert second in Path(download.path()).read_text()

    # Leaving the page stops the polling.
    page.get_by_test_id("nav-admin/monitor").click()
    page.get_by_test_id("gauge-cpu").wait_for()
    polled = len(tails)
    page.wait_for_timeout(2_500)  # longer than one polling interval: nothing may come
    assert len(tails) == polled

    # The whitelisted server logs.
    console.goto("/admin/system-logs?source=server")
    page.get_by_test_id("logs-files").get_by_text("syslog", exact=True).click()
    lines.get_by_text(SYSLOG_LINE).wait_for()
    expect(page.get_by_test_id("logs-delete")).to_have_count(0)  # server logs cannot be deleted
    console.shot("system-logs-server")


# --- phone width, in Chinese ---------------------------------------------------------------------

PAGES = {
    "/admin/configs": "运行时配置",
    "/admin/cache": "缓存管理",
    "/admin/client-filter": "客户端过滤",
    "/admin/monitor": "系统监控",
    "/admin/system-logs": "系统日志",
}


def test_every_system_page_fits_a_phone_in_chinese(browser: Any, console_relay: Any) -> None:
    context = browser.new_context(viewport=PHONE, locale="zh-CN", is_mobile=True)
    context.set_default_timeout(15_000)
    try:
        console = ConsolePage(context.new_page(), console_relay.base_url, "phone-zh")
        console.login("admin", ADMIN_PASSWORD)
        page = console.page
        for path, heading in PAGES.items():
            console.goto(path)
            page.get_by_role("heading", name=heading).wait_for()
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], f"{path} is {width} px wide"
            console.shot(path.rsplit("/", 1)[-1])
        assert not console.errors, console.errors
    finally:
        context.close()
