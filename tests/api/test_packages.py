"""Packages: the admin's catalogue, packages assigned to users (new, extend, reset), the user's own
views, and API keys bound to one of their owner's packages."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from ..support import Api

DAY = timedelta(days=1)


def _package(admin: Api, **fields: Any) -> dict[str, Any]:
    body = {"name": f"pkg-{uuid.uuid4().hex[:8]}", "price": 10.0, "token_quota": 100000, "valid_days": 30}
    return admin.ok("POST", "/api/admin/packages", json={**body, **fields})  # type: ignore[no-any-return]


def _assign(admin: Api, user_id: int, package_id: int, **fields: Any) -> dict[str, Any]:
    return admin.ok(  # type: ignore[no-any-return]
        "POST", f"/api/admin/user-packages/user/{user_id}", json={"package_id": package_id, **fields}
    )


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def test_package_crud(admin: Api) -> None:
    status, body = admin.post(
        "/api/admin/packages",
        json={
            "name": "基础套餐",
            "description": "适合个人用户",
            "price": 10.0,
            "token_quota": 100000,
            "cost_quota": 5.5,
            "valid_days": 30,
            "allowed_platforms": "claude-official, openai,claude-official",
            "allowed_models": "claude-sonnet-4-5, gpt-5",
            "allowed_clients": "claude-code",
            "rate_limit": 60,
            "daily_limit": 1000,
            "sort_order": 3,
        },
    )
    assert status == 201 and body["message"] == "created"
    created = body["data"]
    assert created["allowed_platforms"] == "claude-official,openai"
    assert created["allowed_models"] == "claude-sonnet-4-5,gpt-5"
    assert (created["allowed_clients"], created["status"], created["sort_order"]) == (
        "claude-code",
        "active",
        3,
    )
    assert created["cost_quota"] == 5.5 and created["daily_limit"] == 1000
    assert created["created_at"].endswith("Z") and created["updated_at"].endswith("Z")

    pid = created["id"]
    assert admin.ok("GET", f"/api/admin/packages/{pid}") == created
    updated = admin.ok(
        "PUT",
        f"/api/admin/packages/{pid}",
        json={"price": 12.5, "status": "disabled", "allowed_platforms": ""},
    )
    assert (updated["price"], updated["status"], updated["allowed_platforms"]) == (12.5, "disabled", "")
    assert updated["name"] == "基础套餐" and updated["token_quota"] == 100000  # the rest unchanged
    assert (
        admin.ok("PUT", f"/api/admin/packages/{pid}", json={"allowed_platforms": "all"})["allowed_platforms"]
        == ""
    )

    assert admin.ok("DELETE", f"/api/admin/packages/{pid}") is None
    for method in ("GET", "PUT", "DELETE"):
        status, body = admin.call(method, f"/api/admin/packages/{pid}", json={})
        assert (status, body) == (404, {"code": 404, "message": "套餐不存在"}), method


def test_package_list_paging_and_status_filter(admin: Api) -> None:
    tag = uuid.uuid4().hex[:6]
    made = [_package(admin, name=f"page-{tag}-{i}", sort_order=-1000) for i in range(3)]
    off = _package(admin, name=f"page-{tag}-off", status="disabled", sort_order=-1000)
    first = admin.ok("GET", "/api/admin/packages?page=1&page_size=2")
    assert set(first) == {"items", "total", "page", "page_size"}
    assert first["page"] == 1 and first["page_size"] == 2 and first["total"] >= 4
    # Shop order (sort_order, id): these come first.
    assert [p["id"] for p in first["items"]] == [made[0]["id"], made[1]["id"]]
    second = admin.ok("GET", "/api/admin/packages?page=2&page_size=2")
    assert [p["id"] for p in second["items"]] == [made[2]["id"], off["id"]]
    disabled = admin.ok("GET", "/api/admin/packages?status=disabled&page_size=100")
    assert off["id"] in {p["id"] for p in disabled["items"]}
    assert all(p["status"] == "disabled" for p in disabled["items"])
    assert admin.get("/api/admin/packages?status=sold")[0] == 400
    assert admin.ok("GET", "/api/admin/packages?page_size=1000")["page_size"] == 100


def test_package_validation(admin: Api) -> None:
    good = {"name": "x", "price": 1.0, "token_quota": 10, "valid_days": 30}
    cases = [
        ({}, "name: field required"),
        ({**good, "name": ""}, "name:"),
        ({**good, "name": "n" * 101}, "name:"),
        ({k: v for k, v in good.items() if k != "price"}, "price: field required"),
        ({**good, "price": -1}, "price:"),
        ({**good, "price": "10"}, "price:"),
        ({**good, "token_quota": -5}, "token_quota:"),
        ({**good, "token_quota": 1.5}, "token_quota:"),
        ({**good, "cost_quota": -0.01}, "cost_quota:"),
        ({**good, "valid_days": 0}, "valid_days:"),
        ({**good, "valid_days": 3651}, "valid_days:"),
        ({**good, "rate_limit": -1}, "rate_limit:"),
        ({**good, "daily_limit": -1}, "daily_limit:"),
        ({**good, "status": "expired"}, "status:"),
        ({**good, "allowed_platforms": "claude"}, "allowed_platforms: must be account types"),
        ({**good, "allowed_models": "a;b"}, "allowed_models:"),
        ({**good, "sort_order": True}, "sort_order:"),
    ]
    for payload, message in cases:
        status, body = admin.post("/api/admin/packages", json=payload)
        assert status == 400 and body["code"] == 400, (payload, body)
        assert body["message"].startswith(message), (payload, body)
    pid = _package(admin)["id"]
    status, body = admin.put(f"/api/admin/packages/{pid}", json={"valid_days": 0})
    assert status == 400 and body["message"].startswith("valid_days:")
    assert admin.get("/api/admin/packages/abc")[0] == 400


def test_assign_new_with_overrides_and_errors(admin: Api, make_user: Callable[..., Api]) -> None:
    user = make_user()
    uid = user.user["id"]  # type: ignore[attr-defined]
    package = _package(admin, token_quota=1000, cost_quota=2.0, daily_limit=50)
    before = datetime.now(UTC)
    status, body = admin.post(f"/api/admin/user-packages/user/{uid}", json={"package_id": package["id"]})
    assert status == 201 and body["message"] == "created"
    plain = body["data"]
    assert plain["user_id"] == uid and plain["package_id"] == package["id"]
    assert plain["package_name"] == package["name"] and plain["status"] == "active"
    assert (plain["token_quota"], plain["used_tokens"], plain["remaining_tokens"]) == (1000, 0, 1000)
    assert (plain["cost_quota"], plain["used_cost"], plain["remaining_cost"]) == (2.0, 0.0, 2.0)
    assert plain["daily_limit"] == 50
    start, end = _time(plain["start_time"]), _time(plain["end_time"])
    assert before - timedelta(seconds=5) <= start <= datetime.now(UTC) and end - start == 30 * DAY

    custom = _assign(
        admin,
        uid,
        package["id"],
        token_quota=0,
        cost_quota=0,
        valid_days=7,
        start_time="2099-01-01T08:00:00",  # no offset: UTC
    )
    assert custom["start_time"] == "2099-01-01T08:00:00Z" and custom["end_time"] == "2099-01-08T08:00:00Z"
    assert custom["token_quota"] == 0 and custom["remaining_tokens"] is None  # 0 = no cap
    assert custom["cost_quota"] == 0 and custom["remaining_cost"] is None
    shifted = _assign(admin, uid, package["id"], valid_days=1, start_time="2099-01-01T08:00:00+08:00")
    assert shifted["start_time"] == "2099-01-01T00:00:00Z"

    listed = admin.ok("GET", f"/api/admin/user-packages/user/{uid}")
    assert [h["id"] for h in listed] == [shifted["id"], custom["id"], plain["id"]]  # newest first

    missing = [
        (f"/api/admin/user-packages/user/{uid}", {"package_id": 999999999}, 404, "套餐不存在"),
        ("/api/admin/user-packages/user/999999999", {"package_id": package["id"]}, 404, "user not found"),
    ]
    for path, payload, code, message in missing:
        assert admin.post(path, json=payload) == (code, {"code": code, "message": message})
    assert admin.get("/api/admin/user-packages/user/999999999") == (
        404,
        {"code": 404, "message": "user not found"},
    )
    bad = [
        ({}, "package_id: field required"),
        ({"package_id": package["id"], "mode": "renew"}, "mode:"),
        ({"package_id": package["id"], "valid_days": 0}, "valid_days:"),
        ({"package_id": package["id"], "token_quota": -1}, "token_quota:"),
        ({"package_id": package["id"], "cost_quota": -1}, "cost_quota:"),
        ({"package_id": package["id"], "start_time": "tomorrow"}, "start_time:"),
    ]
    for payload, message in bad:
        status, body = admin.post(f"/api/admin/user-packages/user/{uid}", json=payload)
        assert status == 400 and body["message"].startswith(message), (payload, body)


def test_assign_extend_and_reset(admin: Api, make_user: Callable[..., Api]) -> None:
    uid = make_user().user["id"]  # type: ignore[attr-defined]
    package = _package(admin, token_quota=1000, cost_quota=1.5, valid_days=10)
    other = _package(admin, token_quota=5, valid_days=10)

    # Nothing held yet: extend and reset behave as new.
    first = _assign(admin, uid, package["id"], mode="extend")
    assert first["token_quota"] == 1000 and first["status"] == "active"
    end = _time(first["end_time"])

    extended = _assign(admin, uid, package["id"], mode="extend", token_quota=500, valid_days=5)
    assert extended["id"] == first["id"]
    assert (extended["token_quota"], extended["cost_quota"]) == (1500, 3.0)
    assert _time(extended["end_time"]) == end + 5 * DAY
    assert extended["start_time"] == first["start_time"]

    # The holding of the same package that ends last is the one extended; other packages are never touched.
    later = _assign(admin, uid, package["id"], start_time=_iso(datetime.now(UTC) + 10 * DAY))
    again = _assign(admin, uid, package["id"], mode="extend", valid_days=1)
    assert again["id"] == later["id"] and _time(again["end_time"]) == _time(later["end_time"]) + DAY
    small = _assign(admin, uid, other["id"], mode="extend")
    assert small["id"] not in {first["id"], later["id"]} and small["token_quota"] == 5

    # No cap on either side stays no cap.
    unlimited = _assign(admin, uid, other["id"], mode="extend", token_quota=0)
    assert unlimited["id"] == small["id"]
    assert unlimited["token_quota"] == 0 and unlimited["remaining_tokens"] is None

    start = datetime.now(UTC) + 2 * DAY
    reset = _assign(admin, uid, package["id"], mode="reset", token_quota=300, start_time=_iso(start))
    assert reset["id"] == later["id"] and reset["status"] == "active"
    quotas = (reset["token_quota"], reset["used_tokens"], reset["cost_quota"], reset["used_cost"])
    assert quotas == (300, 0, 1.5, 0.0)
    assert _time(reset["start_time"]) == start and _time(reset["end_time"]) == start + 10 * DAY
    assert (
        admin.ok("GET", f"/api/admin/user-packages/user/{uid}")[-1]["token_quota"] == 1500
    )  # first: as it was

    # An expired holding is never the live one renewed.
    old = _assign(admin, uid, other["id"], start_time=_iso(datetime.now(UTC) - 40 * DAY))
    assert old["status"] == "expired"
    assert _assign(admin, uid, other["id"], mode="reset")["id"] == small["id"]
    holdings = admin.ok("GET", f"/api/admin/user-packages/user/{uid}")
    assert [h["id"] for h in holdings] == [old["id"], small["id"], later["id"], first["id"]]


def test_update_user_package_status_rules(admin: Api, make_user: Callable[..., Api]) -> None:
    uid = make_user().user["id"]  # type: ignore[attr-defined]
    package = _package(admin, token_quota=1000, valid_days=10)
    expired = _assign(admin, uid, package["id"], start_time=_iso(datetime.now(UTC) - 20 * DAY))
    assert expired["status"] == "expired"
    path = f"/api/admin/user-packages/{expired['id']}"

    status, body = admin.put(path, json={"status": "active"})
    assert status == 400 and "已过期" in body["message"] and "end_time" in body["message"]
    # Moving the end into the future revives it, unless a status is given with it.
    future = _iso(datetime.now(UTC) + 5 * DAY)
    assert admin.ok("PUT", path, json={"end_time": future, "status": "disabled"})["status"] == "disabled"
    assert admin.ok("PUT", path, json={"token_quota": 2000})["status"] == "disabled"  # disabled stays
    revived = admin.ok("PUT", path, json={"status": "active"})
    assert revived["status"] == "active" and revived["token_quota"] == 2000 and revived["end_time"] == future
    past = _iso(datetime.now(UTC) - DAY)
    assert admin.ok("PUT", path, json={"end_time": past})["status"] == "expired"
    assert admin.ok("PUT", path, json={"end_time": future})["status"] == "active"
    assert admin.ok("PUT", path, json={"status": "exhausted"})["status"] == "exhausted"
    assert admin.ok("PUT", path, json={"cost_quota": 3.0})["status"] == "active"
    assert admin.ok("PUT", path, json={"status": "expired"})["status"] == "expired"

    status, body = admin.put(path, json={"end_time": "2000-01-01T00:00:00Z"})
    assert status == 400 and body["message"].startswith("end_time:")
    status, body = admin.put(path, json={"status": "finished"})
    assert status == 400 and body["message"].startswith("status:")
    assert admin.put("/api/admin/user-packages/999999999", json={"token_quota": 1}) == (
        404,
        {"code": 404, "message": "用户套餐不存在"},
    )

    assert admin.ok("DELETE", path) is None
    assert admin.delete(path) == (404, {"code": 404, "message": "用户套餐不存在"})
    assert admin.ok("GET", f"/api/admin/user-packages/user/{uid}") == []


def test_delete_package_refused_while_in_use(admin: Api, make_user: Callable[..., Api]) -> None:
    uid = make_user().user["id"]  # type: ignore[attr-defined]
    package = _package(admin)
    live = [_assign(admin, uid, package["id"]) for _ in range(2)]
    expired = _assign(admin, uid, package["id"], start_time=_iso(datetime.now(UTC) - 60 * DAY))
    status, body = admin.delete(f"/api/admin/packages/{package['id']}")
    assert (status, body) == (
        400,
        {"code": 400, "message": "套餐仍被 2 个有效的用户套餐使用，请先停用或删除这些用户套餐"},
    )
    # The refusal is in the operation log (written at once: nothing of the refused request holds a lock).
    audit = admin.ok("GET", "/api/admin/operation-logs?resource=package&page_size=100")["items"]
    path = f"/api/admin/packages/{package['id']}"
    assert any(e["path"] == path and e["status_code"] == 400 for e in audit), audit
    admin.ok("PUT", f"/api/admin/user-packages/{live[0]['id']}", json={"status": "disabled"})
    admin.ok("DELETE", f"/api/admin/user-packages/{live[1]['id']}")
    assert admin.ok("DELETE", f"/api/admin/packages/{package['id']}") is None
    # The holdings left keep their name; they no longer point at the package.
    kept = admin.ok("GET", f"/api/admin/user-packages/user/{uid}")
    assert {h["id"] for h in kept} == {live[0]["id"], expired["id"]}
    assert all(h["package_id"] is None and h["package_name"] == package["name"] for h in kept)


def test_user_views(admin: Api, make_user: Callable[..., Api]) -> None:
    user = make_user()
    uid = user.user["id"]  # type: ignore[attr-defined]
    on_sale = _package(admin, sort_order=-2000)
    hidden = _package(admin, status="disabled", sort_order=-2000)
    shop = user.ok("GET", "/api/packages")
    ids = [p["id"] for p in shop]
    assert on_sale["id"] in ids and hidden["id"] not in ids
    assert all(p["status"] == "active" for p in shop)
    assert ids == [p["id"] for p in sorted(shop, key=lambda p: (p["sort_order"], p["id"]))]

    assert user.ok("GET", "/api/my-packages") == [] and user.ok("GET", "/api/my-packages/active") == []
    short = _assign(admin, uid, on_sale["id"], valid_days=3)
    long = _assign(admin, uid, on_sale["id"], valid_days=20, token_quota=0)
    _assign(admin, uid, hidden["id"], start_time=_iso(datetime.now(UTC) + 5 * DAY))  # not started
    _assign(admin, uid, hidden["id"], start_time=_iso(datetime.now(UTC) - 50 * DAY))  # expired
    disabled = _assign(admin, uid, on_sale["id"])
    admin.ok("PUT", f"/api/admin/user-packages/{disabled['id']}", json={"status": "disabled"})

    mine = user.ok("GET", "/api/my-packages")
    assert len(mine) == 5 and mine[0]["id"] == disabled["id"] and mine[-1]["id"] == short["id"]
    assert [h["status"] for h in mine] == ["disabled", "expired", "active", "active", "active"]
    active = user.ok("GET", "/api/my-packages/active")
    assert [h["id"] for h in active] == [short["id"], long["id"]]  # ending first, first
    assert active[0]["remaining_tokens"] == 100000 and active[1]["remaining_tokens"] is None
    assert set(active[0]) == {
        "id",
        "user_id",
        "package_id",
        "package_name",
        "token_quota",
        "used_tokens",
        "remaining_tokens",
        "cost_quota",
        "used_cost",
        "remaining_cost",
        "daily_limit",
        "start_time",
        "end_time",
        "status",
        "created_at",
    }
    # Another user sees none of it.
    assert make_user().ok("GET", "/api/my-packages") == []


def test_key_bound_to_a_user_package(admin: Api, make_user: Callable[..., Api]) -> None:
    user, stranger = make_user(), make_user()
    uid = user.user["id"]  # type: ignore[attr-defined]
    package = _package(admin)
    own = _assign(admin, uid, package["id"])
    foreign = _assign(admin, stranger.user["id"], package["id"])  # type: ignore[attr-defined]
    refused = {"code": 400, "message": "user_package_id: 用户套餐不存在或不属于该用户"}

    key = user.ok("POST", "/api/api-keys", json={"name": "bound", "user_package_id": own["id"]})
    assert key["user_package_id"] == own["id"]
    assert user.post("/api/api-keys", json={"name": "x", "user_package_id": foreign["id"]}) == (400, refused)
    assert user.post("/api/api-keys", json={"name": "x", "user_package_id": 999999999}) == (400, refused)
    status, body = user.post("/api/api-keys", json={"name": "x", "user_package_id": -1})
    assert status == 400 and body["message"].startswith("user_package_id:")

    path = f"/api/api-keys/{key['id']}"
    assert user.put(path, json={"user_package_id": foreign["id"]}) == (400, refused)
    assert user.ok("GET", path)["user_package_id"] == own["id"]  # unchanged
    assert user.ok("PUT", path, json={"user_package_id": 0})["user_package_id"] is None
    assert user.ok("PUT", path, json={"user_package_id": own["id"]})["user_package_id"] == own["id"]
    assert user.ok("PUT", path, json={"name": "renamed"})["user_package_id"] == own["id"]
    assert user.ok("PUT", path, json={"user_package_id": None})["user_package_id"] is None

    # The admin: on update, and on a key created for the user; the owner decides, not the admin.
    admin_path = f"/api/admin/api-keys/{key['id']}"
    assert admin.ok("PUT", admin_path, json={"user_package_id": own["id"]})["user_package_id"] == own["id"]
    assert admin.put(admin_path, json={"user_package_id": foreign["id"]}) == (400, refused)
    given = admin.ok(
        "POST", f"/api/admin/users/{uid}/api-keys", json={"name": "given", "user_package_id": own["id"]}
    )
    assert given["user_package_id"] == own["id"]

    # Deleting the user package unbinds the key.
    admin.ok("DELETE", f"/api/admin/user-packages/{own['id']}")
    assert user.ok("GET", path)["user_package_id"] is None


def test_package_routes_need_admin(make_user: Callable[..., Api], anon: Api) -> None:
    user = make_user()
    routes = [
        ("GET", "/api/admin/packages"),
        ("POST", "/api/admin/packages"),
        ("GET", "/api/admin/packages/1"),
        ("PUT", "/api/admin/packages/1"),
        ("DELETE", "/api/admin/packages/1"),
        ("GET", "/api/admin/user-packages/user/1"),
        ("POST", "/api/admin/user-packages/user/1"),
        ("PUT", "/api/admin/user-packages/1"),
        ("DELETE", "/api/admin/user-packages/1"),
    ]
    for method, path in routes:
        assert user.call(method, path, json={}) == (403, {"code": 403, "message": "需要管理员权限"}), path
        assert anon.call(method, path, json={})[0] == 401, path
    for path in ("/api/packages", "/api/my-packages", "/api/my-packages/active"):
        assert anon.get(path)[0] == 401
