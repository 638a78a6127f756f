"""The pages every signed-in user has: my usage, my API keys, my packages and my profile, each
checked against what the API says after real requests through the relay (official SDKs, the
fake upstream behind one Claude account)."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from playwright.sync_api import expect

from ..support import ADMIN_PASSWORD, Api
from .conftest import PHONE, ConsolePage, field_error

MODEL = "claude-opus-4-8"
PASSWORD = "secret-pass"


@pytest.fixture(scope="module")
def claude_account(console_relay: Any) -> Iterator[int]:
    """One Claude account on the fake upstream, shared by this module's tests."""
    admin = Api(console_relay.base_url)
    admin.login("admin", ADMIN_PASSWORD)
    account = admin.ok(
        "POST",
        "/api/admin/accounts",
        json={
            "name": f"me-claude-{uuid.uuid4().hex[:6]}",
            "type": "claude-official",
            "api_key": f"up-{uuid.uuid4().hex[:12]}",
            "base_url": console_relay.mock_url,
        },
    )
    yield account["id"]
    admin.close()


def new_user(admin_api: Api, relay: Any) -> tuple[str, Api]:
    name = f"me{uuid.uuid4().hex[:8]}"
    admin_api.ok("POST", "/api/admin/users", json={"username": name, "password": PASSWORD})
    client = Api(relay.base_url)
    client.login(name, PASSWORD)
    return name, client


def ask_claude(relay: Any, key: str) -> anthropic.types.Message:
    client = anthropic.Anthropic(base_url=f"{relay.base_url}/claude", api_key=key, max_retries=0)
    return client.messages.create(
        model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "Hello relay"}]
    )


def wait_for_records(user: Api, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The user's usage records, once the recorder has written `count` of them (newest first)."""
    deadline = time.monotonic() + timeout
    while True:
        data = user.ok("GET", "/api/usage/records", params={"page_size": 100})
        if data["total"] >= count:
            return data["items"]
        assert time.monotonic() < deadline, f"only {data['total']} of {count} usage records were written"
        time.sleep(0.05)


def cost_text(value: float) -> str:
    """The page's formatCost for an amount below $1 in en-US: up to six decimals."""
    text = f"{value:.6f}".rstrip("0")
    whole, _, decimals = text.partition(".")
    return f"${whole}.{decimals.ljust(2, '0')}"


def test_my_usage_shows_my_request_in_cards_charts_and_records(
    console: ConsolePage, admin_api: Api, console_relay: Any, claude_account: int
) -> None:
    name, user = new_user(admin_api, console_relay)
    key = user.ok("POST", "/api/api-keys", json={"name": "laptop"})
    reply = ask_claude(console_relay, key["key"])
    (record,) = wait_for_records(user, 1)
    assert record["total_tokens"] == reply.usage.input_tokens + reply.usage.output_tokens
    stats = user.ok("GET", "/api/usage/stats")

    page = console.page
    page.emulate_media(reduced_motion="reduce")  # charts drawn without animation
    console.login(name, PASSWORD)
    assert page.url.endswith("/me/usage")  # a user's home page
    records = page.get_by_test_id("usage-records")
    row = records.locator("tr", has_text=record["request_id"])
    row.wait_for()
    assert MODEL in row.inner_text() and "laptop" in row.inner_text()
    assert cost_text(record["cost"]) in row.inner_text()
    expect(page.get_by_test_id("usage-today-cost")).to_have_text(cost_text(stats["today"]["cost"]))
    expect(page.get_by_test_id("usage-today")).to_contain_text("Requests 1 ·")
    expect(page.get_by_test_id("usage-range-cost")).to_have_text(cost_text(record["cost"]))
    assert page.get_by_test_id("usage-daily-chart").locator("canvas").count() >= 1
    assert page.get_by_test_id("usage-model-chart").locator("canvas").count() >= 1
    expect(page.get_by_test_id("usage-models")).to_contain_text(MODEL)
    console.shot("usage")

    # Another key's filter finds nothing; clearing it shows the record again.
    other = user.ok("POST", "/api/api-keys", json={"name": "unused"})
    console.goto(f"/me/usage?api_key_id={other['id']}")
    records.get_by_text("No Data").wait_for()
    console.goto(f"/me/usage?api_key_id={key['id']}")
    records.locator("tr", has_text=record["request_id"]).wait_for()

    page.set_viewport_size(PHONE)
    page.get_by_test_id("menu-button").wait_for()
    console.shot("usage-phone")
    user.close()


def test_a_key_made_in_the_page_is_shown_once_works_and_can_be_revealed_edited_and_deleted(
    console: ConsolePage, admin_api: Api, console_relay: Any, claude_account: int
) -> None:
    name, user = new_user(admin_api, console_relay)
    page = console.page
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=console_relay.base_url)
    page.emulate_media(reduced_motion="reduce")  # charts drawn without animation
    console.login(name, PASSWORD)
    console.goto("/me/keys")
    for kind, suffix in (("claude", "/claude"), ("openai", "/openai/v1"), ("gemini", "/gemini")):
        expect(page.get_by_test_id(f"base-url-{kind}")).to_have_text(console_relay.base_url + suffix)
    page.get_by_test_id("base-url-openai-copy").click()
    assert page.evaluate("navigator.clipboard.readText()") == console_relay.base_url + "/openai/v1"
    console.shot("keys-empty")

    # A missing name: the API's message next to the field, the dialog still open.
    page.get_by_test_id("key-create").click()
    page.get_by_test_id("key-save").click()
    message = field_error(page, "key-name")
    message.wait_for()
    expect(message).to_contain_text("at least 1 character")
    page.get_by_test_id("key-name").fill("ci-runner")
    page.get_by_test_id("key-save").click()

    dialog = page.get_by_test_id("key-secret-dialog")
    dialog.wait_for()
    expect(page.get_by_test_id("key-once-warning")).to_contain_text("only time it is shown in full")
    full = page.get_by_test_id("key-full").input_value()
    assert re.fullmatch(r"sk-[0-9a-f]{64}", full)
    page.get_by_test_id("key-copy").click()
    assert page.evaluate("navigator.clipboard.readText()") == full
    console.shot("key-created")
    page.get_by_test_id("key-secret-close").click()
    dialog.wait_for(state="hidden")

    (created,) = user.ok("GET", "/api/api-keys")
    assert created["name"] == "ci-runner" and full.startswith(created["key_prefix"].rstrip("."))
    assert full not in page.content()  # shown once: gone from the page once the dialog closed
    page.get_by_test_id("keys-table").get_by_text(created["key_prefix"]).wait_for()

    # The key works with the official SDK.
    reply = ask_claude(console_relay, full)
    assert reply.content[0].text.startswith("Hello from mock")
    wait_for_records(user, 1)

    # Reveal shows the same key.
    page.get_by_test_id(f"key-reveal-{created['id']}").click()
    dialog.wait_for()
    assert page.get_by_test_id("key-full").input_value() == full
    assert not page.get_by_test_id("key-once-warning").is_visible()
    page.get_by_test_id("key-secret-close").click()
    dialog.wait_for(state="hidden")

    # Edit: an unknown client type is refused next to its field; the fix is saved.
    page.get_by_test_id(f"key-edit-{created['id']}").click()
    page.get_by_test_id("key-name").fill("ci-runner-2")
    clients = page.get_by_test_id("key-clients")
    clients.click()
    page.keyboard.type("no-such-client")
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    page.get_by_test_id("key-rate").locator("input").fill("30")
    page.get_by_test_id("key-save").click()
    message = field_error(page, "key-clients")
    message.wait_for()
    expect(message).to_contain_text("no-such-client")
    assert page.get_by_test_id("key-name").input_value() == "ci-runner-2"  # nothing typed is lost
    console.shot("key-edit-error")
    page.locator(".el-form-item", has=clients).locator(".el-tag__close").click()
    page.get_by_test_id("key-save").click()
    page.get_by_test_id("key-dialog").wait_for(state="hidden")
    saved = user.ok("GET", f"/api/api-keys/{created['id']}")
    assert (saved["name"], saved["rate_limit"], saved["allowed_clients"]) == ("ci-runner-2", 30, "")

    # Usage in the drawer matches the key's own figures.
    page.get_by_test_id(f"key-detail-{created['id']}").click()
    drawer = page.get_by_test_id("key-drawer")
    requests_card = page.get_by_test_id("key-usage-requests")
    requests_card.get_by_text("1", exact=True).wait_for()
    usage = user.ok("GET", f"/api/api-keys/{created['id']}/usage")
    assert usage["summary"]["request_count"] == 1
    expect(page.get_by_test_id("key-usage-tokens").locator(".value")).to_have_text(
        str(usage["summary"]["total_tokens"])
    )
    assert drawer.locator("canvas").count() >= 1
    console.shot("key-drawer")
    page.keyboard.press("Escape")
    drawer.wait_for(state="hidden")

    # Disable, then the SDK is refused; enable again.
    page.get_by_test_id(f"key-toggle-{created['id']}").click()
    _wait_for(lambda: user.ok("GET", f"/api/api-keys/{created['id']}")["status"] == "disabled")
    with pytest.raises(anthropic.APIStatusError):
        ask_claude(console_relay, full)
    page.get_by_test_id(f"key-toggle-{created['id']}").click()
    _wait_for(lambda: user.ok("GET", f"/api/api-keys/{created['id']}")["status"] == "active")
    console.shot("keys")

    page.get_by_test_id(f"key-delete-{created['id']}").click()
    page.locator(".el-message-box").get_by_role("button", name="Delete").click()
    page.get_by_test_id("keys-table").get_by_text("No API keys yet").wait_for()
    assert user.ok("GET", "/api/api-keys") == []
    user.close()


def _wait_for(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the change did not arrive"
        time.sleep(0.05)


def test_my_packages_show_quota_used_and_left(
    console: ConsolePage, admin_api: Api, console_relay: Any, claude_account: int
) -> None:
    name, user = new_user(admin_api, console_relay)
    uid = user.ok("GET", "/api/profile")["id"]
    package = admin_api.ok(
        "POST",
        "/api/admin/packages",
        json={
            "name": f"Starter {uuid.uuid4().hex[:4]}",
            "price": 9.5,
            "token_quota": 1000,
            "cost_quota": 2,
            "valid_days": 30,
            "description": "For trying things out",
        },
    )
    holding = admin_api.ok("POST", f"/api/admin/user-packages/user/{uid}", json={"package_id": package["id"]})
    key = user.ok("POST", "/api/api-keys", json={"name": "paid", "user_package_id": holding["id"]})
    ask_claude(console_relay, key["key"])
    wait_for_records(user, 1)
    _wait_for(lambda: user.ok("GET", "/api/my-packages/active")[0]["used_tokens"] > 0)
    (mine,) = user.ok("GET", "/api/my-packages/active")

    page = console.page
    page.emulate_media(reduced_motion="reduce")  # charts drawn without animation
    console.login(name, PASSWORD)
    console.goto("/me/packages")
    card = page.get_by_test_id(f"package-{holding['id']}")
    card.wait_for()
    expect(card).to_contain_text(package["name"])
    tokens = page.get_by_test_id(f"package-{holding['id']}-tokens").inner_text()
    assert tokens == f"{mine['used_tokens']} / 1,000 · {mine['remaining_tokens']} left"
    cost = page.get_by_test_id(f"package-{holding['id']}-cost").inner_text()
    assert cost.startswith(f"{cost_text(mine['used_cost'])} / $2.00 · ")
    expect(page.get_by_test_id(f"package-{holding['id']}-expiry")).to_have_text("30 days left")
    expect(card.locator(".el-progress")).to_have_count(3)
    expect(page.get_by_test_id("my-packages")).to_contain_text(package["name"])
    catalogue = page.get_by_test_id("package-catalogue").inner_text()
    assert package["name"] in catalogue and "For trying things out" in catalogue and "$9.50" in catalogue
    console.shot("packages")
    user.close()


def test_profile_email_and_password_change(console: ConsolePage, admin_api: Api, console_relay: Any) -> None:
    name, user = new_user(admin_api, console_relay)
    page = console.page
    page.emulate_media(reduced_motion="reduce")  # charts drawn without animation
    console.login(name, PASSWORD)
    page.get_by_test_id("user-menu").click()
    page.locator(".el-dropdown-menu__item", has_text="Profile").click()
    page.wait_for_url(re.compile(r".*/me/profile$"))
    page.get_by_test_id("profile-card").get_by_text(name, exact=True).wait_for()  # loaded

    page.get_by_test_id("profile-email").fill("not-an-email")
    page.get_by_test_id("profile-save").click()
    message = field_error(page, "profile-email")
    message.wait_for()
    expect(message).to_contain_text("not a valid email address")
    page.get_by_test_id("profile-email").fill("me@example.com")
    page.get_by_test_id("profile-save").click()
    message.wait_for(state="hidden")
    _wait_for(lambda: user.ok("GET", "/api/profile")["email"] == "me@example.com")

    # Too short: the API's message next to the new password; what was typed stays.
    page.get_by_test_id("password-old").fill(PASSWORD)
    page.get_by_test_id("password-new").fill("abc")
    page.get_by_test_id("password-confirm").fill("abc")
    page.get_by_test_id("password-save").click()
    message = field_error(page, "password-new")
    message.wait_for()
    expect(message).to_contain_text("at least 6 characters")
    assert page.get_by_test_id("password-old").input_value() == PASSWORD
    console.shot("profile-password-error")

    page.get_by_test_id("password-old").fill("wrong-pass")
    page.get_by_test_id("password-new").fill("brand-new-pass")
    page.get_by_test_id("password-confirm").fill("brand-new-pass")
    page.get_by_test_id("password-save").click()
    message = field_error(page, "password-old")
    message.wait_for()
    expect(message).to_contain_text("incorrect old password")

    page.get_by_test_id("password-old").fill(PASSWORD)
    page.get_by_test_id("password-save").click()
    page.wait_for_url(re.compile(r".*/login$"))
    status, _ = Api(console_relay.base_url).post(
        "/api/auth/login", json={"username": name, "password": PASSWORD}
    )
    assert status == 401
    console.login(name, "brand-new-pass")
    console.goto("/me/profile")
    assert page.get_by_test_id("profile-email").input_value() == "me@example.com"
    console.shot("profile")
    user.close()
