"""The log pages in a browser: a real request made with the official `anthropic` SDK through the
relay to the fake upstream, found in the request logs, filtered by model, its captured body opened;
and the operation log showing what the administrator did."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from playwright.sync_api import expect

from ..support import ADMIN_PASSWORD, Api
from .conftest import PHONE, ConsolePage

MODEL = "claude-haiku-4-5"


def wait_for_logs(api: Api, key_id: int, count: int) -> list[dict[str, Any]]:
    """The key's request logs, once the recorder has written `count` of them."""
    deadline = time.monotonic() + 10
    while True:
        data = api.ok("GET", "/api/admin/logs", params={"api_key_id": key_id})
        if data["total"] >= count:
            return data["items"]  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"only {data['total']} of {count} logs were written"
        time.sleep(0.05)


@pytest.fixture
def capture_bodies(admin_api: Api) -> Iterator[None]:
    admin_api.ok("PUT", "/api/admin/configs", json={"key": "capture_request_body", "value": True})
    yield
    admin_api.ok("PUT", "/api/admin/configs", json={"key": "capture_request_body", "value": False})


@pytest.fixture
def caller(admin_api: Api, console_relay: Any) -> dict[str, Any]:
    """A user with an API key whose group holds one Claude account on the fake upstream."""
    tag = uuid.uuid4().hex[:6]
    group = admin_api.ok("POST", "/api/admin/account-groups", json={"name": f"web-logs-{tag}"})
    account = admin_api.ok(
        "POST",
        "/api/admin/accounts",
        json={
            "name": f"mock-claude-{tag}",
            "type": "claude-official",
            "api_key": f"up-{tag}",
            "base_url": console_relay.mock_url,
            "group_ids": [group["id"]],
        },
    )
    user = admin_api.ok(
        "POST", "/api/admin/users", json={"username": f"caller{tag}", "password": "caller-pass"}
    )
    key = admin_api.ok(
        "POST",
        f"/api/admin/users/{user['id']}/api-keys",
        json={"name": f"sdk-{tag}", "account_group_id": group["id"]},
    )
    return {"account": account, "user": user, "key": key}


def test_a_proxied_request_is_in_the_request_logs_with_its_body(
    console: ConsolePage, admin_api: Api, console_relay: Any, caller: dict[str, Any], capture_bodies: None
) -> None:
    marker = f"web-console-marker-{uuid.uuid4().hex[:8]}"
    client = anthropic.Anthropic(
        base_url=f"{console_relay.base_url}/claude", api_key=caller["key"]["key"], max_retries=0
    )
    reply = client.messages.create(
        model=MODEL, max_tokens=64, messages=[{"role": "user", "content": f"Say hello ({marker})"}]
    )
    assert reply.content[0].text.startswith("Hello from mock")
    (log,) = wait_for_logs(admin_api, caller["key"]["id"], 1)
    assert log["status"] == "success" and log["model"] == MODEL

    page = console.page
    console.login("admin", ADMIN_PASSWORD)
    console.goto(f"/admin/request-logs?user_id={caller['user']['id']}")
    table = page.get_by_test_id("request-logs-table")
    row = table.locator(".el-table__row", has_text=MODEL)
    row.wait_for()
    expect(table.locator(".el-table__row")).to_have_count(1)  # only this user's request
    expect(row).to_contain_text(caller["user"]["username"])
    expect(row).to_contain_text(caller["account"]["name"])
    # The summary cards add up the same filter.
    expect(page.get_by_test_id("logs-card-requests").locator(".value")).to_have_text("1")
    expect(page.get_by_test_id("logs-card-success").locator(".value")).to_have_text("100.0%")
    console.settled()
    console.shot("request-logs")

    # Another model: nothing; this one: the row again.
    page.get_by_test_id("logs-model").click()
    page.keyboard.type("gpt-4o-mini")
    page.keyboard.press("Enter")
    table.locator(".el-table__empty-text").wait_for()
    expect(page.get_by_test_id("logs-card-requests").locator(".value")).to_have_text("0")
    page.get_by_test_id("logs-model").click()
    page.keyboard.type(MODEL)
    page.keyboard.press("Enter")
    row.wait_for()
    expect(table.locator(".el-table__row")).to_have_count(1)

    page.get_by_test_id(f"log-detail-{log['id']}").click()
    detail = page.get_by_test_id("log-detail")
    body = detail.get_by_test_id("log-request-body")
    body.wait_for()
    expect(body).to_contain_text(marker)
    assert f'"model": "{MODEL}"' in body.inner_text()  # pretty JSON, not the raw one-liner
    expect(detail).to_contain_text(log["request_id"])
    assert caller["key"]["key"] not in detail.inner_text()  # the caller's key is never shown
    console.settled()
    console.shot("request-log-detail")
    body.scroll_into_view_if_needed()
    console.shot("request-log-body")


def test_request_logs_at_phone_width(browser: Any, console_relay: Any) -> None:
    context = browser.new_context(viewport=PHONE, locale="en-US", is_mobile=True)
    try:
        console = ConsolePage(context.new_page(), console_relay.base_url, "phone-logs")
        console.login("admin", ADMIN_PASSWORD)
        console.goto("/admin/request-logs")
        page = console.page
        page.get_by_test_id("request-logs-table").wait_for()
        model_filter = page.get_by_test_id("logs-model")
        assert not model_filter.is_visible()  # the filters fold away behind one button
        console.settled()
        console.shot("request-logs")
        page.get_by_test_id("logs-filters").click()
        model_filter.wait_for()
        console.shot("request-logs-filters")
        # Nothing of the page is wider than the phone (the table scrolls inside its own box).
        assert page.evaluate("document.querySelector('.page').scrollWidth") <= PHONE["width"]
        assert not console.errors, console.errors
    finally:
        context.close()


def test_the_operation_log_shows_what_the_admin_did(console: ConsolePage, admin_api: Api) -> None:
    model_id = f"audited-{uuid.uuid4().hex[:6]}"
    admin_api.ok("POST", "/api/admin/users", json={"username": f"u{model_id}", "password": "audited-pass"})
    admin_api.ok(
        "POST",
        "/api/admin/models",
        json={
            "model_id": model_id,
            "model_name": "Audited",
            "platform": "openai",
            "input_price": 1,
            "output_price": 2,
        },
    )
    page = console.page
    console.login("admin", ADMIN_PASSWORD)
    console.goto("/admin/operation-logs")
    table = page.get_by_test_id("operation-logs-table")
    row = table.locator(".el-table__row", has_text=f"创建模型: {model_id}")
    row.wait_for()
    assert "admin" in row.inner_text() and "create" in row.inner_text()
    console.settled()
    console.shot("operation-logs")

    # Only the user resource: the model's entry is gone; the model resource: it is back.
    page.get_by_test_id("operation-resource").click()
    page.get_by_role("option", name="User", exact=True).click()
    row.wait_for(state="detached")
    assert all("user" in r.inner_text().lower() for r in table.locator(".el-table__row").all())
    page.get_by_test_id("operation-resource").click()
    page.get_by_role("option", name="Model", exact=True).click()
    row.wait_for()

    (entry,) = [
        e
        for e in admin_api.ok("GET", "/api/admin/operation-logs", params={"resource": "model"})["items"]
        if e["description"] == f"创建模型: {model_id}"
    ]
    page.get_by_test_id(f"operation-detail-{entry['id']}").click()
    body = page.get_by_test_id("operation-request-body")
    body.wait_for()
    assert f'"model_id": "{model_id}"' in body.inner_text()
    expect(page.get_by_test_id("operation-detail")).to_contain_text("POST")
    console.settled()
    console.shot("operation-log-detail")
