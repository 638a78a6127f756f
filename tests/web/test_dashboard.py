"""The admin dashboard: today's figures, the trend, top models / users / keys and the accounts'
health, checked against traffic this test sends through the relay with the official SDK (this
module has a relay of its own, so today's figures are exactly that traffic)."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import anthropic
import httpx
import pytest
from playwright.sync_api import expect

from ..support import ADMIN_PASSWORD, Api
from .conftest import ConsolePage

MODEL = "claude-opus-4-8"


def number(text: str) -> int:
    return int(text.replace(",", ""))


def cost_text(value: float) -> str:
    """The page's formatCost for an amount below $1 in en-US: up to six decimals."""
    text = f"{value:.6f}".rstrip("0")
    whole, _, decimals = text.partition(".")
    return f"${whole}.{decimals.ljust(2, '0')}"


def add_account(admin: Api, relay: Any) -> tuple[dict[str, Any], str]:
    credential = f"up-{uuid.uuid4().hex[:12]}"
    account = admin.ok(
        "POST",
        "/api/admin/accounts",
        json={
            "name": f"dash-{credential[3:9]}",
            "type": "claude-official",
            "api_key": credential,
            "base_url": relay.mock_url,
        },
    )
    return account, credential


def test_dashboard_shows_todays_traffic_and_account_health(
    console: ConsolePage, admin_api: Api, console_relay: Any
) -> None:
    account, credential = add_account(admin_api, console_relay)
    username = f"dash{uuid.uuid4().hex[:6]}"
    admin_api.ok("POST", "/api/admin/users", json={"username": username, "password": "secret-pass"})
    user = Api(console_relay.base_url)
    user.login(username, "secret-pass")
    key = user.ok("POST", "/api/api-keys", json={"name": "dash-key"})
    client = anthropic.Anthropic(
        base_url=f"{console_relay.base_url}/claude", api_key=key["key"], max_retries=0
    )

    # One answered request, then one the upstream fails (its 500 also sends the account to cool down).
    reply = client.messages.create(model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "hi"}])
    failing = {"key": credential, "mode": "500", "count": 1}
    httpx.post(f"{console_relay.mock_url}/__mock/behaviour", json=failing).raise_for_status()
    with pytest.raises(anthropic.InternalServerError):
        client.messages.create(model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "again"}])
    deadline = time.monotonic() + 10
    while admin_api.ok("GET", "/api/admin/logs/summary")["requests"] < 2:
        assert time.monotonic() < deadline, "the request logs were not written"
        time.sleep(0.05)
    today = admin_api.ok("GET", "/api/admin/monitor/today")
    tokens = reply.usage.input_tokens + reply.usage.output_tokens
    assert today["requests"] == {"total": 2, "success": 1, "errors": 1, "rejected": 0}
    assert today["total_tokens"] == tokens

    page = console.page
    page.emulate_media(reduced_motion="reduce")  # charts drawn without animation
    console.login("admin", ADMIN_PASSWORD)
    assert page.url.endswith("/dashboard")  # an admin's home page

    def value(name: str) -> Any:
        return page.get_by_test_id(f"stat-{name}-value")

    value("requests").get_by_text("2", exact=True).wait_for()
    assert number(value("tokens").inner_text()) == tokens
    expect(value("cost")).to_have_text(cost_text(today["total_cost"]))
    assert number(value("errors").inner_text()) == 1
    expect(page.get_by_test_id("stat-requests")).to_contain_text("Success rate 50")
    assert number(value("users").inner_text()) == 1  # only the SDK's user sent requests today

    models = page.get_by_test_id("top-models")
    row = models.locator("tr", has_text=MODEL)
    row.wait_for()
    assert "claude-official" in row.inner_text() and cost_text(today["total_cost"]) in row.inner_text()
    users_row = page.get_by_test_id("top-users").locator("tr", has_text=username)
    users_row.wait_for()
    assert cost_text(today["total_cost"]) in users_row.inner_text()
    keys_row = page.get_by_test_id("top-keys").locator("tr", has_text="dash-key")
    assert username in keys_row.inner_text() and key["key_prefix"] in keys_row.inner_text()

    # Health: the one account, cooling down after the upstream's 500, listed with its reason.
    health = page.get_by_test_id("account-health")
    assert number(page.get_by_test_id("health-total").locator(".mini-value").inner_text()) == 1
    assert number(page.get_by_test_id("health-cooling").locator(".mini-value").inner_text()) == 1
    cooling = page.get_by_test_id("cooling-accounts")
    expect(cooling).to_contain_text(account["name"])
    expect(health.locator("canvas")).to_have_count(1)
    load_row = page.get_by_test_id("account-load").locator("tr", has_text=account["name"])
    assert re.search(r"\b2\b", load_row.inner_text()) and re.search(r"\b1\b", load_row.inner_text())

    # The trend: a chart for 7 days, then 30 days (one summary per day asked for).
    expect(page.get_by_test_id("trend-chart").locator("canvas")).to_have_count(1)
    with page.expect_response(re.compile(r"/api/admin/logs/summary\?.*start_date=")) as answer:
        page.get_by_test_id("trend-days-30").click()
    assert answer.value.ok
    page.get_by_text("Top users, last 30 days").wait_for()
    page.get_by_test_id("trend-metric-cost").click()
    page.wait_for_load_state("networkidle")
    console.shot("dashboard")

    # Refresh picks up a change: a second account appears in the health figures.
    add_account(admin_api, console_relay)
    page.get_by_test_id("dashboard-refresh").click()
    page.get_by_test_id("health-total").locator(".mini-value").get_by_text("2", exact=True).wait_for()
    user.close()


def test_dashboard_is_for_admins_only(console: ConsolePage, admin_api: Api, console_relay: Any) -> None:
    username = f"plain{uuid.uuid4().hex[:6]}"
    admin_api.ok("POST", "/api/admin/users", json={"username": username, "password": "secret-pass"})
    console.login(username, "secret-pass")
    page = console.page
    expect(page.get_by_test_id("nav-dashboard")).to_have_count(0)
    console.goto("/dashboard")
    page.wait_for_url(re.compile(r".*/me/usage$"))
    status, _ = Api(
        console_relay.base_url,
        token=page.evaluate("JSON.parse(localStorage.getItem('aiproxy.session')).token"),
    ).get("/api/admin/monitor")
    assert status == 403
