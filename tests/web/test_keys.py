"""The admin API-keys page in a browser: a key made for a user is shown once and works with the
official anthropic SDK; limits, restrictions and bindings are edited, toggled and deleted; the
API's message for a bad field shows next to it and the dialog keeps what was typed."""

from __future__ import annotations

import uuid
from typing import Any

import anthropic
from playwright.sync_api import expect

from ..support import ADMIN_PASSWORD, Api
from .conftest import ConsolePage, field_error, pick

CLAUDE_MODEL = "claude-opus-4-8"


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def new_user(api: Api) -> dict[str, Any]:
    return api.ok("POST", "/api/admin/users", json={"username": unique("keyuser"), "password": "secret-pass"})


def test_a_key_made_for_a_user_is_shown_once_and_serves_the_anthropic_sdk(
    console: ConsolePage, console_relay: Any, admin_api: Api
) -> None:
    page = console.page
    user = new_user(admin_api)
    group = admin_api.ok("POST", "/api/admin/account-groups", json={"name": unique("keys-g")})
    admin_api.ok(
        "POST",
        "/api/admin/accounts",
        json={
            "name": unique("up"),
            "type": "claude-official",
            "api_key": unique("up-"),
            "base_url": console_relay.mock_url,
            "group_ids": [group["id"]],
        },
    )
    console.login("admin", ADMIN_PASSWORD)
    console.goto("/admin/api-keys")
    page.get_by_test_id("keys-table").wait_for()
    page.get_by_test_id("key-create").click()

    # No user chosen: said at the user field before anything is sent.
    page.get_by_test_id("key-save").click()
    field_error(page, "key-user").get_by_text("Choose the user").wait_for()

    pick(page, "key-user", user["username"])
    pick(page, "key-group", group["name"])
    page.get_by_test_id("key-rate-limit").locator("input").fill("0")
    page.get_by_test_id("key-save").click()  # the name is still empty: the API says so
    message = field_error(page, "key-name")
    message.wait_for()
    expect(message).to_contain_text("at least 1 character")
    assert page.get_by_test_id("key-group").inner_text().strip() == group["name"]
    console.shot("key-field-error")

    page.get_by_test_id("key-name").fill("laptop")
    page.get_by_test_id("key-save").click()
    shown = page.get_by_test_id("key-created-value")
    shown.wait_for()
    key = shown.inner_text().strip()
    assert key.startswith("sk-")
    console.shot("key-created")
    page.get_by_test_id("key-created-close").click()
    page.get_by_test_id("keys-table").get_by_text("laptop", exact=True).wait_for()

    (stored,) = admin_api.ok("GET", "/api/admin/api-keys", params={"user_id": user["id"]})["items"]
    assert (stored["name"], stored["account_group_id"], stored["rate_limit"]) == ("laptop", group["id"], 0)
    assert key.startswith(stored["key_prefix"].rstrip("."))

    client = anthropic.Anthropic(base_url=f"{console_relay.base_url}/claude", api_key=key, max_retries=0)
    message = client.messages.create(
        model=CLAUDE_MODEL,
        max_tokens=50,
        messages=[{"role": "user", "content": "Hello through the console key"}],
    )
    assert message.content[0].text.startswith("Hello from mock")
    console.goto("/admin/api-keys")
    page.get_by_test_id("keys-table").get_by_text("laptop", exact=True).wait_for()
    console.shot("keys")


def test_a_key_is_edited_toggled_and_deleted(console: ConsolePage, admin_api: Api) -> None:
    page = console.page
    user = new_user(admin_api)
    key = admin_api.ok("POST", f"/api/admin/users/{user['id']}/api-keys", json={"name": "ci-runner"})
    console.login("admin", ADMIN_PASSWORD)
    console.goto("/admin/api-keys")
    page.get_by_test_id("keys-filter-keyword").fill(user["username"])
    page.get_by_test_id("keys-search").click()
    page.get_by_test_id(f"key-edit-{key['id']}").click()
    assert page.get_by_test_id("key-name").input_value() == "ci-runner"

    # A model name the API refuses: its message next to the models field, the rest kept.
    page.get_by_test_id("key-rate-limit").locator("input").fill("120")
    page.get_by_test_id("key-models").fill("claude$opus")
    page.get_by_test_id("key-models").press("Enter")
    page.get_by_test_id("key-save").click()
    message = field_error(page, "key-models")
    message.wait_for()
    expect(message).to_contain_text("comma-separated list")
    assert page.get_by_test_id("key-rate-limit").locator("input").input_value() == "120"

    page.locator(".el-form-item", has=page.get_by_test_id("key-models")).locator(".el-tag__close").click()
    page.get_by_test_id("key-models").fill(CLAUDE_MODEL)
    page.get_by_test_id("key-models").press("Enter")
    pick(page, "key-platforms", "claude-official")
    page.keyboard.press("Escape")
    page.get_by_test_id("key-save").click()
    page.get_by_test_id("key-dialog").wait_for(state="hidden")
    edited = admin_api.ok("GET", f"/api/admin/api-keys/{key['id']}")
    assert (edited["rate_limit"], edited["allowed_models"], edited["allowed_platforms"]) == (
        120,
        CLAUDE_MODEL,
        "claude-official",
    )

    page.get_by_test_id(f"key-toggle-{key['id']}").click()
    page.wait_for_function(
        "id => !document.querySelector(`[data-test=key-toggle-${id}]`).classList.contains('is-checked')",
        arg=key["id"],
    )
    assert admin_api.ok("GET", f"/api/admin/api-keys/{key['id']}")["status"] == "disabled"

    page.get_by_test_id(f"key-delete-{key['id']}").click()
    page.get_by_role("button", name="OK").click()
    page.get_by_test_id(f"key-edit-{key['id']}").wait_for(state="detached")
    status, _ = admin_api.get(f"/api/admin/api-keys/{key['id']}")
    assert status == 404
