"""Profile, password change, and the error envelope everywhere under /api."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from ..support import Api


def test_profile_get_and_update(make_user: Callable[..., Api]) -> None:
    user = make_user(email="first@example.com")
    profile = user.ok("GET", "/api/profile")
    assert profile["email"] == "first@example.com" and profile["role"] == "user"
    updated = user.ok("PUT", "/api/profile", json={"email": "second@example.com", "role": "admin"})
    assert updated["email"] == "second@example.com"
    assert updated["role"] == "user"  # a user cannot promote themself
    status, body = user.put("/api/profile", json={"email": "not-an-email"})
    assert status == 400 and body["message"].startswith("email:")


def test_password_change_invalidates_older_tokens(make_user: Callable[..., Api], relay: object) -> None:
    user = make_user(password="old-password")
    old_token = user.token
    status, body = user.put(
        "/api/profile/password", json={"old_password": "nope-nope", "new_password": "new-pass"}
    )
    assert (status, body["message"]) == (400, "incorrect old password")
    status, body = user.put(
        "/api/profile/password", json={"old_password": "old-password", "new_password": "123"}
    )
    assert status == 400 and body["message"].startswith("new_password:")
    assert (
        user.ok(
            "PUT",
            "/api/profile/password",
            json={"old_password": "old-password", "new_password": "new-password"},
        )
        is None
    )
    status, body = user.get("/api/profile")
    assert status == 401 and body["code"] == 401
    user.login(user.user["username"], "new-password")  # type: ignore[attr-defined]
    assert user.token != old_token
    assert user.ok("GET", "/api/profile")["username"] == user.user["username"]  # type: ignore[attr-defined]


def test_missing_bad_and_forged_tokens(anon: Api) -> None:
    assert anon.get("/api/profile") == (401, {"code": 401, "message": "unauthorized"})
    status, body = anon.get("/api/profile", headers={"Authorization": "Bearer not.a.jwt"})
    assert status == 401 and body["code"] == 401
    forged = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIiwicm9sZSI6ImFkbWluIiwiZXhwIjo0MTAyNDQ0ODAwfQ.c2lnbmF0dXJl"
    status, _ = anon.get("/api/admin/users", headers={"Authorization": f"Bearer {forged}"})
    assert status == 401


def test_unknown_route_and_method(anon: Api, admin: Api) -> None:
    assert anon.get("/api/does-not-exist") == (404, {"code": 404, "message": "not found"})
    assert admin.call("PATCH", "/api/profile") == (405, {"code": 405, "message": "method not allowed"})
    assert admin.put("/api/profile") == (400, {"code": 400, "message": "request body is required"})


def test_validation_error_envelope(admin: Api) -> None:
    status, body = admin.post("/api/admin/users", json={"password": "secret1"})
    assert (status, body) == (400, {"code": 400, "message": "username: field required"})
    status, body = admin.get("/api/admin/users?page=0")
    assert status == 400 and body["message"].startswith("page:")
    status, body = admin.get("/api/admin/users/abc")
    assert status == 400 and body["message"].startswith("user_id:")
    status, body = admin.post(
        "/api/admin/users", content=b"[1,2]", headers={"content-type": "application/json"}
    )
    assert status == 400 and body["code"] == 400


def test_openapi_schema_served(relay: object, anon: Api) -> None:
    response = httpx.get(f"{anon.base_url}/api/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in (
        "/api/auth/login",
        "/api/profile",
        "/api/api-keys",
        "/api/admin/users",
        "/api/admin/configs",
    ):
        assert path in paths
    assert "requestBody" in paths["/api/auth/login"]["post"]
