"""Admin: users, rates, per-user keys, usage summary and concurrency."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from ..support import Api


def _name() -> str:
    return f"adm{uuid.uuid4().hex[:8]}"


def test_user_crud(admin: Api, anon: Api) -> None:
    name = _name()
    created = admin.ok(
        "POST",
        "/api/admin/users",
        json={
            "username": name,
            "password": "secret1",
            "email": "u@x.io",
            "price_rate": 0.5,
            "max_concurrency": 3,
        },
    )
    assert (created["role"], created["status"], created["price_rate"], created["max_concurrency"]) == (
        "user",
        "active",
        0.5,
        3,
    )
    status, body = admin.post("/api/admin/users", json={"username": name, "password": "secret1"})
    assert (status, body["message"]) == (400, "username already exists")

    uid = created["id"]
    assert admin.ok("GET", f"/api/admin/users/{uid}")["username"] == name
    updated = admin.ok(
        "PUT", f"/api/admin/users/{uid}", json={"role": "admin", "price_rate": 2, "email": "n@x.io"}
    )
    assert (updated["role"], updated["price_rate"], updated["email"]) == ("admin", 2.0, "n@x.io")
    status, body = admin.put(f"/api/admin/users/{uid}", json={"account_group_id": 999999})
    assert (status, body["message"]) == (400, "account_group_id: account group not found")
    status, body = admin.post(
        "/api/admin/users", json={"username": name + "g", "password": "secret1", "account_group_id": 999999}
    )
    assert status == 400 and body["message"] == "account_group_id: account group not found"
    status, body = admin.put(f"/api/admin/users/{uid}", json={"role": "root"})
    assert status == 400 and body["message"].startswith("role:")

    anon.login(name, "secret1")
    admin.ok("PUT", f"/api/admin/users/{uid}", json={"status": "disabled"})
    assert anon.get("/api/profile")[0] == 401  # disabling ends sessions
    status, body = anon.post("/api/auth/login", json={"username": name, "password": "secret1"})
    assert (status, body["message"]) == (403, "user is disabled")

    admin.ok("PUT", f"/api/admin/users/{uid}", json={"status": "active", "password": "another1"})
    anon.login(name, "another1")

    assert admin.ok("DELETE", f"/api/admin/users/{uid}") is None
    assert admin.get(f"/api/admin/users/{uid}") == (404, {"code": 404, "message": "user not found"})
    assert anon.get("/api/profile")[0] == 401


def test_admin_cannot_remove_themself(admin: Api) -> None:
    me = admin.ok("GET", "/api/profile")
    assert admin.delete(f"/api/admin/users/{me['id']}")[0] == 400
    assert admin.put(f"/api/admin/users/{me['id']}", json={"role": "user"})[0] == 400
    assert admin.put(f"/api/admin/users/{me['id']}", json={"status": "disabled"})[0] == 400


def test_list_paging_and_filters(admin: Api) -> None:
    tag = uuid.uuid4().hex[:6]
    ids = [
        admin.ok("POST", "/api/admin/users", json={"username": f"pg{tag}{i}", "password": "secret1"})["id"]
        for i in range(3)
    ]
    data = admin.ok("GET", f"/api/admin/users?keyword=pg{tag}&page_size=2")
    assert data["total"] == 3 and data["page"] == 1 and [u["id"] for u in data["items"]] == ids[:2]
    data = admin.ok("GET", f"/api/admin/users?keyword=pg{tag}&page_size=2&page=2")
    assert [u["id"] for u in data["items"]] == ids[2:]
    assert admin.ok("GET", "/api/admin/users?page_size=1000")["page_size"] == 100
    assert all(u["role"] == "admin" for u in admin.ok("GET", "/api/admin/users?role=admin")["items"])
    everyone = admin.ok("GET", "/api/admin/users/all")
    assert set(ids) <= {u["id"] for u in everyone}


def test_price_rates(admin: Api) -> None:
    a = admin.ok("POST", "/api/admin/users", json={"username": _name(), "password": "secret1"})
    b = admin.ok("POST", "/api/admin/users", json={"username": _name(), "password": "secret1"})
    result = admin.ok(
        "POST", "/api/admin/users/batch-price-rate", json={"user_ids": [a["id"]], "price_rate": 0.8}
    )
    assert result["updated"] == 1
    assert admin.ok("GET", f"/api/admin/users/{a['id']}")["price_rate"] == 0.8
    assert admin.ok("GET", f"/api/admin/users/{b['id']}")["price_rate"] == 1.0
    status, body = admin.post("/api/admin/users/batch-price-rate", json={"user_ids": [], "price_rate": 1})
    assert status == 400 and body["message"].startswith("user_ids:")
    assert admin.post("/api/admin/users/all-price-rate", json={"price_rate": -1})[0] == 400
    result = admin.ok("POST", "/api/admin/users/all-price-rate", json={"price_rate": 1.0})
    assert result["updated"] >= 2
    assert admin.ok("GET", f"/api/admin/users/{a['id']}")["price_rate"] == 1.0


def test_user_keys_usage_and_concurrency(admin: Api, make_user: Callable[..., Api]) -> None:
    user = make_user()
    uid = user.user["id"]  # type: ignore[attr-defined]
    key = admin.ok("POST", f"/api/admin/users/{uid}/api-keys", json={"name": "given", "price_rate": 0.5})
    assert key["key"].startswith("sk-") and key["user_id"] == uid and key["price_rate"] == 0.5
    # The owner sees it and can reveal it; it is the same key.
    assert user.ok("GET", f"/api/api-keys/{key['id']}/reveal")["key"] == key["key"]
    assert [k["id"] for k in admin.ok("GET", f"/api/admin/users/{uid}/api-keys")] == [key["id"]]
    assert admin.ok("PUT", f"/api/admin/users/{uid}/api-keys/{key['id']}/toggle")["status"] == "disabled"
    other = make_user()
    other_id = other.user["id"]  # type: ignore[attr-defined]
    assert admin.delete(f"/api/admin/users/{other_id}/api-keys/{key['id']}")[0] == 404
    assert admin.ok("DELETE", f"/api/admin/users/{uid}/api-keys/{key['id']}") is None
    assert admin.ok("GET", f"/api/admin/users/{uid}/api-keys") == []

    summary = admin.ok("GET", f"/api/admin/users/{uid}/usage/summary")
    assert summary["request_count"] == 0 and summary["total_cost"] == 0
    assert summary["today"] == {"cost": 0.0, "tokens": 0, "requests": 0}

    conc = admin.ok("GET", f"/api/admin/users/{uid}/concurrency")
    assert conc == {"user_id": uid, "current": 0, "max_concurrency": 10, "holders": []}
    assert admin.ok("DELETE", f"/api/admin/users/{uid}/concurrency") == {"user_id": uid, "released": 0}
    assert admin.get("/api/admin/users/999999/concurrency")[0] == 404


def test_concurrency_shows_and_resets_live_slots(
    admin: Api, make_user: Callable[..., Api], relay: object
) -> None:
    """With Redis the test can hold slots the way a gateway instance would, and watch the admin view."""
    import asyncio

    from aiproxy.state_keys import user_slots
    from aiproxy.store.state import RedisState

    env = relay.env_overrides  # type: ignore[attr-defined]
    if "AIPROXY_REDIS_URL" not in env:
        return  # in-process state belongs to the relay process alone
    uid = make_user().user["id"]  # type: ignore[attr-defined]

    async def hold(count: int) -> None:
        state = RedisState.from_url(env["AIPROXY_REDIS_URL"], prefix=env["AIPROXY_REDIS_PREFIX"])
        for i in range(count):
            assert await state.acquire_slot(user_slots(uid), f"req-{i}", 10, 60)
        await state.close()

    asyncio.run(hold(3))
    conc = admin.ok("GET", f"/api/admin/users/{uid}/concurrency")
    assert conc["current"] == 3 and sorted(conc["holders"]) == ["req-0", "req-1", "req-2"]
    assert admin.ok("DELETE", f"/api/admin/users/{uid}/concurrency")["released"] == 3
    assert admin.ok("GET", f"/api/admin/users/{uid}/concurrency")["current"] == 0
