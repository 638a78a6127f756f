"""The billing pages in a browser: the model price book (create, edit, switch off, with the API's
messages next to the field), packages, and assigning a package to a user."""

from __future__ import annotations

import re
import uuid
from typing import Any

from playwright.sync_api import expect

from ..support import ADMIN_PASSWORD, Api
from .conftest import ConsolePage, field_error


def pick_option(page: Any, name: str) -> None:
    """Click an option of the open select dropdown (rendered in a popper at the end of <body>)."""
    page.locator(".el-select-dropdown__item:visible", has_text=name).first.click()


def model_by_id(api: Api, model_id: str) -> dict[str, Any]:
    (found,) = [
        m
        for m in api.ok("GET", "/api/admin/models", params={"keyword": model_id})["items"]
        if m["model_id"] == model_id
    ]
    return found


def test_a_model_price_typed_in_the_page_is_what_the_api_serves(console: ConsolePage, admin_api: Api) -> None:
    page = console.page
    console.login("admin", ADMIN_PASSWORD)
    console.goto("/admin/models")
    table = page.get_by_test_id("models-table")
    table.locator(".el-table__row").first.wait_for()  # the built-in price book is listed
    console.settled()
    console.shot("models")

    model_id = f"web-model-{uuid.uuid4().hex[:6]}"
    page.get_by_test_id("model-create").click()
    page.get_by_test_id("model-id").fill(model_id)
    page.get_by_test_id("model-input_price").fill("-1")
    page.get_by_test_id("model-output_price").fill("4")
    page.get_by_test_id("model-save").click()
    # One refusal at a time, each next to its own field; nothing typed is lost.
    name_error = field_error(page, "model-name")
    name_error.wait_for()
    expect(name_error).to_contain_text("at least 1 character")
    page.get_by_test_id("model-name").fill("Web Model")
    page.get_by_test_id("model-save").click()
    price_error = field_error(page, "model-input_price")
    price_error.wait_for()
    expect(price_error).to_contain_text("greater than or equal to 0")
    assert page.get_by_test_id("model-id").input_value() == model_id
    assert page.get_by_test_id("model-output_price").input_value() == "4"
    console.settled()
    console.shot("model-field-error")
    page.get_by_test_id("model-input_price").fill("1.25")
    page.get_by_test_id("model-cache_read_price").fill("0.125")
    page.get_by_test_id("model-aliases").fill(f"{model_id}-20260101")
    page.get_by_test_id("model-save").click()
    page.get_by_test_id("model-save").wait_for(state="hidden")

    created = model_by_id(admin_api, model_id)
    assert (created["model_name"], created["platform"], created["input_price"], created["output_price"]) == (
        "Web Model",
        "openai",
        1.25,
        4.0,
    )
    assert (created["cache_read_price"], created["aliases"], created["enabled"]) == (
        0.125,
        f"{model_id}-20260101",
        True,
    )
    served = {m["id"]: m for m in admin_api.ok("GET", "/api/models")}
    assert served[model_id]["input_price"] == 1.25

    # The same id again: the API's message lands on the model id field.
    page.get_by_test_id("model-create").click()
    page.get_by_test_id("model-id").fill(model_id)
    page.get_by_test_id("model-name").fill("Twin")
    page.get_by_test_id("model-input_price").fill("1")
    page.get_by_test_id("model-output_price").fill("1")
    page.get_by_test_id("model-save").click()
    twin_error = field_error(page, "model-id")
    twin_error.wait_for()
    expect(twin_error).to_contain_text("model_id already exists")
    page.keyboard.press("Escape")
    page.get_by_test_id("model-save").wait_for(state="hidden")

    # Find it, change its price, switch it off.
    page.get_by_test_id("models-keyword").fill(model_id)
    page.get_by_test_id("models-search").click()
    row = table.locator(".el-table__row", has_text=model_id)
    row.wait_for()
    expect(table.locator(".el-table__row")).to_have_count(1)
    page.get_by_test_id(f"model-edit-{model_id}").click()
    assert page.get_by_test_id("model-input_price").input_value() == "1.25"
    page.get_by_test_id("model-output_price").fill("6")
    page.get_by_test_id("model-save").click()
    page.get_by_test_id("model-save").wait_for(state="hidden")
    row.get_by_text("$6", exact=True).wait_for()
    assert model_by_id(admin_api, model_id)["output_price"] == 6.0
    page.get_by_test_id(f"model-toggle-{model_id}").click()
    row.locator(".el-switch:not(.is-checked)").wait_for()
    assert model_by_id(admin_api, model_id)["enabled"] is False
    assert model_id not in {m["id"] for m in admin_api.ok("GET", "/api/models")}
    console.settled()
    console.shot("model-edited")


def test_a_package_is_created_and_assigned_to_a_user(console: ConsolePage, admin_api: Api) -> None:
    page = console.page
    username = f"buyer{uuid.uuid4().hex[:6]}"
    user = admin_api.ok("POST", "/api/admin/users", json={"username": username, "password": "buyer-pass-1"})
    console.login("admin", ADMIN_PASSWORD)
    console.goto("/admin/packages")

    name = f"Monthly {uuid.uuid4().hex[:6]}"
    page.get_by_test_id("package-create").click()
    page.get_by_test_id("package-name").fill(name)
    page.get_by_test_id("package-price").fill("9.9")
    page.get_by_test_id("package-token-quota").fill("2000000")
    page.get_by_test_id("package-valid-days").fill("0")
    page.get_by_test_id("package-save").click()
    days_error = field_error(page, "package-valid-days")
    days_error.wait_for()
    expect(days_error).to_contain_text("greater than or equal to 1")
    assert page.get_by_test_id("package-name").input_value() == name
    console.settled()
    console.shot("package-field-error")
    page.get_by_test_id("package-valid-days").fill("30")
    page.get_by_test_id("package-save").click()
    table = page.get_by_test_id("packages-table")
    table.get_by_text(name, exact=True).wait_for()
    console.settled()
    console.shot("packages")
    (package,) = [p for p in admin_api.ok("GET", "/api/admin/packages")["items"] if p["name"] == name]
    assert (package["price"], package["token_quota"], package["valid_days"], package["status"]) == (
        9.9,
        2000000,
        30,
        "active",
    )

    # "Assign" on the package's row opens the user-packages page with the package chosen.
    table.locator(".el-table__row", has_text=name).get_by_role("button", name="Assign").click()
    page.wait_for_url(re.compile(r".*/admin/user-packages\?package_id=\d+$"))
    page.get_by_test_id("assign-save").wait_for()
    page.get_by_test_id("assign-save").click()  # no user yet: said next to the user picker
    user_error = field_error(page, "assign-user")
    user_error.wait_for()
    expect(user_error).to_have_text("Choose a user")
    page.get_by_test_id("assign-user").click()
    page.keyboard.type(username)
    pick_option(page, f"{username} (#{user['id']})")
    expect(page.get_by_test_id("assign-user")).to_contain_text(username)  # chosen, before saving
    page.get_by_test_id("assign-valid-days").fill("7")
    page.get_by_test_id("assign-save").click()
    holdings = page.get_by_test_id("user-packages-table")
    row = holdings.locator(".el-table__row", has_text=name)
    row.wait_for()
    expect(row.get_by_test_id("user-package-status")).to_have_text("Active")
    expect(row).to_contain_text("0 / 2.00M")
    assert page.url.endswith(f"/admin/user-packages?user_id={user['id']}")
    console.settled()
    console.shot("user-packages")

    (holding,) = admin_api.ok("GET", f"/api/admin/user-packages/user/{user['id']}")
    assert (holding["package_id"], holding["package_name"], holding["token_quota"], holding["status"]) == (
        package["id"],
        name,
        2000000,
        "active",
    )
    assert holding["used_tokens"] == 0 and holding["remaining_tokens"] == 2000000

    # Raise its quota: a fraction is refused next to the field, a whole number is kept.
    page.get_by_test_id(f"user-package-edit-{holding['id']}").click()
    page.get_by_test_id("edit-token-quota").fill("2.5")
    page.get_by_test_id("edit-save").click()
    quota_error = field_error(page, "edit-token-quota")
    quota_error.wait_for()
    expect(quota_error).to_contain_text("valid integer")
    page.get_by_test_id("edit-token-quota").fill("5000000")
    page.get_by_test_id("edit-save").click()
    row.get_by_text("0 / 5.00M", exact=False).wait_for()
    (holding,) = admin_api.ok("GET", f"/api/admin/user-packages/user/{user['id']}")
    assert (holding["token_quota"], holding["status"]) == (5000000, "active")

    # Disable it from the row; the API agrees.
    row.get_by_role("button", name="Disable").click()
    row.get_by_text("Disabled", exact=True).wait_for()
    (holding,) = admin_api.ok("GET", f"/api/admin/user-packages/user/{user['id']}")
    assert holding["status"] == "disabled"
