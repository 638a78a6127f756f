"""The console in a browser: sign-in, the shell (menu, language, dark mode, phone width) and the
API's own messages shown next to the field that caused them."""

from __future__ import annotations

import re
import uuid
from typing import Any

from playwright.sync_api import expect

from ..support import ADMIN_PASSWORD, Api
from .conftest import DESKTOP, PHONE, ConsolePage


def test_sign_in_refuses_a_wrong_password_then_lets_the_admin_in(console: ConsolePage) -> None:
    page = console.page
    console.goto("/admin/users")
    assert page.url.endswith("/login?redirect=/admin/users")
    console.shot("login")
    page.get_by_test_id("login-username").fill("admin")
    page.get_by_test_id("login-password").fill("not-the-password")
    page.get_by_test_id("login-submit").click()
    error = page.get_by_test_id("form-error")
    error.wait_for()
    expect(error).to_contain_text("invalid username or password")
    assert page.get_by_test_id("login-username").input_value() == "admin"  # nothing typed is lost
    page.get_by_test_id("login-password").fill(ADMIN_PASSWORD)
    page.get_by_test_id("login-submit").click()
    page.wait_for_url(re.compile(r".*/admin/users$"))  # back where the visit began
    page.get_by_test_id("users-table").get_by_text("admin", exact=True).wait_for()
    page.get_by_test_id("user-menu").click()
    page.get_by_test_id("logout").click()
    page.wait_for_url(re.compile(r".*/login$"))


def test_language_switch_and_dark_mode_are_remembered(console: ConsolePage) -> None:
    page = console.page
    console.login("admin", ADMIN_PASSWORD)
    console.goto("/admin/users")
    page.get_by_test_id("locale-switch").click()
    page.get_by_role("option", name="简体中文").click()
    page.get_by_role("heading", name="用户").wait_for()
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    page.get_by_test_id("theme-switch").click()
    assert page.evaluate("document.documentElement.classList.contains('dark')")
    console.shot("users-zh-dark")
    page.reload()
    page.wait_for_load_state("networkidle")
    page.get_by_role("heading", name="用户").wait_for()
    assert page.evaluate("document.documentElement.classList.contains('dark')")
    page.evaluate("localStorage.clear()")


def test_a_bad_field_shows_the_api_message_next_to_it_and_keeps_the_form(
    console: ConsolePage, admin_api: Api
) -> None:
    page = console.page
    console.login("admin", ADMIN_PASSWORD)
    console.goto("/admin/users")
    page.get_by_test_id("user-create").click()
    name = f"web{uuid.uuid4().hex[:8]}"
    page.get_by_test_id("user-username").fill(name)
    page.get_by_test_id("user-password").fill("short")
    page.get_by_test_id("user-email").fill("someone@example.com")
    page.get_by_test_id("user-save").click()
    field = page.locator(".el-form-item", has=page.get_by_test_id("user-password"))
    message = field.locator(".el-form-item__error")
    message.wait_for()
    expect(message).to_contain_text("at least 6 characters")
    assert page.get_by_test_id("user-username").input_value() == name
    assert page.get_by_test_id("user-email").input_value() == "someone@example.com"
    console.shot("user-field-error")
    page.get_by_test_id("user-password").fill("long-enough-pass")
    page.get_by_test_id("user-save").click()
    page.get_by_test_id("users-table").get_by_text(name, exact=True).wait_for()
    created = [u for u in admin_api.ok("GET", "/api/admin/users", params={"keyword": name})["items"]]
    assert [u["email"] for u in created] == ["someone@example.com"]


def test_phone_width_uses_a_drawer_menu(browser: Any, console_relay: Any) -> None:
    context = browser.new_context(viewport=PHONE, locale="en-US", is_mobile=True)
    try:
        console = ConsolePage(context.new_page(), console_relay.base_url, "phone")
        console.login("admin", ADMIN_PASSWORD)
        console.goto("/admin/users")
        page = console.page
        assert not page.locator(".el-aside").is_visible()
        page.get_by_test_id("menu-button").click()
        page.get_by_test_id("nav-admin/users").wait_for()
        console.shot("menu")
        page.get_by_test_id("nav-admin/users").click()
        page.get_by_test_id("users-table").wait_for()
        assert not console.errors, console.errors
    finally:
        context.close()


def test_the_captcha_shows_when_enabled_and_a_wrong_answer_keeps_the_form(
    console: ConsolePage, admin_api: Api
) -> None:
    admin_api.ok("PUT", "/api/admin/configs", json={"key": "captcha_enabled", "value": True})
    try:
        page = console.page
        console.goto("/login")
        image = page.get_by_test_id("captcha-image")
        image.wait_for()
        first_image = image.get_attribute("src")
        assert first_image and first_image.startswith("data:image/png;base64,")
        page.get_by_test_id("login-username").fill("admin")
        page.get_by_test_id("login-password").fill(ADMIN_PASSWORD)
        page.get_by_test_id("login-submit").click()  # no answer: said before anything is sent
        expect(page.locator(".el-form-item", has=page.get_by_test_id("login-captcha"))).to_contain_text(
            "Required"
        )
        page.get_by_test_id("login-captcha").fill("zzzz")
        page.get_by_test_id("login-submit").click()
        expect(page.get_by_test_id("form-error")).to_contain_text("incorrect captcha")
        # A captcha is single-use: a new one is shown; what was typed stays.
        expect(image).not_to_have_attribute("src", first_image)
        assert page.get_by_test_id("login-username").input_value() == "admin"
        assert page.get_by_test_id("login-captcha").input_value() == ""
        console.shot("captcha")
    finally:
        admin_api.ok("PUT", "/api/admin/configs", json={"key": "captcha_enabled", "value": False})


def test_registration_when_allowed_then_the_new_user_signs_in(console: ConsolePage, admin_api: Api) -> None:
    page = console.page
    console.goto("/login")
    page.get_by_test_id("register-switch").click()
    name = f"reg{uuid.uuid4().hex[:8]}"
    page.get_by_test_id("login-username").fill(name)
    page.get_by_test_id("login-password").fill("12345")
    page.get_by_test_id("register-email").fill("new@example.com")
    page.get_by_test_id("login-submit").click()
    message = page.locator(".el-form-item", has=page.get_by_test_id("login-password"))
    expect(message.locator(".el-form-item__error")).to_contain_text("at least 6 characters")
    assert page.get_by_test_id("register-email").input_value() == "new@example.com"
    console.shot("register-error")
    page.get_by_test_id("login-password").fill("123456-ok")
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("register-email")).to_have_count(0)  # back on the sign-in form
    (user,) = admin_api.ok("GET", "/api/admin/users", params={"keyword": name})["items"]
    assert (user["role"], user["email"]) == ("user", "new@example.com")
    page.get_by_test_id("login-password").fill("123456-ok")
    page.get_by_test_id("login-submit").click()
    page.wait_for_url(re.compile(r".*/me/usage$"))
    # Registration closed: the link is gone.
    admin_api.ok("PUT", "/api/admin/configs", json={"key": "allow_register", "value": False})
    try:
        page.evaluate("localStorage.clear()")
        console.goto("/login")
        page.get_by_test_id("login-submit").wait_for()
        expect(page.get_by_test_id("register-switch")).to_have_count(0)
    finally:
        admin_api.ok("PUT", "/api/admin/configs", json={"key": "allow_register", "value": True})


def test_a_chinese_browser_gets_the_chinese_console(browser: Any, console_relay: Any) -> None:
    context = browser.new_context(viewport=DESKTOP, locale="zh-CN")
    try:
        console = ConsolePage(context.new_page(), console_relay.base_url, "zh-browser")
        console.goto("/login")
        expect(console.page.get_by_role("heading", name="登录 aiproxy")).to_be_visible()
        assert console.page.evaluate("document.documentElement.lang") == "zh-CN"
        console.shot("login")
        assert not console.errors, console.errors
    finally:
        context.close()
