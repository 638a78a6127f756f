"""Public auth: health, captcha, login (with its per-IP limit), register."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from ..support import ADMIN_PASSWORD, Api, RelayServer


def test_health_has_no_envelope(anon: Api) -> None:
    assert anon.get("/health") == (200, {"status": "ok"})


def test_captcha_status_and_disabled_captcha(anon: Api) -> None:
    data = anon.ok("GET", "/api/auth/captcha/status")
    assert data == {"captcha_enabled": False, "login_rate_limit_enabled": True, "allow_register": True}
    assert anon.ok("GET", "/api/auth/captcha") == {"captcha_id": "", "image": "", "enabled": False}


@pytest.fixture
def captcha_on(admin: Api) -> object:
    admin.ok("PUT", "/api/admin/configs", json={"key": "captcha_enabled", "value": True})
    yield
    admin.ok("PUT", "/api/admin/configs", json={"key": "captcha_enabled", "value": False})


def _redis_answer(relay: RelayServer, captcha_id: str) -> str | None:
    """Only the Redis backend lets a test read the stored answer (the image is for humans)."""
    import redis

    url = relay.env_overrides.get("AIPROXY_REDIS_URL")
    if not url:
        return None
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        return client.get(f"{relay.env_overrides['AIPROXY_REDIS_PREFIX']}captcha:{captcha_id}")
    finally:
        client.close()


def test_captcha_required_single_use_and_checked(anon: Api, relay: RelayServer, captcha_on: object) -> None:
    data = anon.ok("GET", "/api/auth/captcha")
    assert data["enabled"] is True and data["captcha_id"]
    assert data["image"].startswith("data:image/png;base64,")
    creds = {"username": "admin", "password": ADMIN_PASSWORD}

    status, body = anon.post("/api/auth/login", json=creds)
    assert (status, body["message"]) == (400, "captcha is required")

    status, body = anon.post(
        "/api/auth/login", json={**creds, "captcha_id": data["captcha_id"], "captcha": "zzzz"}
    )
    assert (status, body["message"]) == (400, "incorrect captcha")
    # The wrong guess consumed it: the same id is gone now.
    status, body = anon.post(
        "/api/auth/login", json={**creds, "captcha_id": data["captcha_id"], "captcha": "zzzz"}
    )
    assert (status, body["message"]) == (400, "captcha expired or invalid")

    fresh = anon.ok("GET", "/api/auth/captcha")
    answer = _redis_answer(relay, fresh["captcha_id"])
    if answer is None:
        return  # in-process state: the answer is only on the image
    login = anon.ok(
        "POST",
        "/api/auth/login",
        json={**creds, "captcha_id": fresh["captcha_id"], "captcha": answer.lower()},
    )
    assert login["user"]["username"] == "admin"
    status, _ = anon.post(
        "/api/auth/login", json={**creds, "captcha_id": fresh["captcha_id"], "captcha": answer}
    )
    assert status == 400  # single use


def test_login_success_and_failure(anon: Api) -> None:
    status, body = anon.post("/api/auth/login", json={"username": "admin", "password": "wrong-password"})
    assert status == 401 and body == {"code": 401, "message": "invalid username or password"}
    status, body = anon.post("/api/auth/login", json={"username": "nobody-here", "password": "whatever"})
    assert status == 401
    data = anon.ok("POST", "/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
    assert data["token"].count(".") == 2
    assert data["user"]["role"] == "admin" and "password_hash" not in data["user"]


def test_login_validation_errors_name_the_field(anon: Api) -> None:
    status, body = anon.post("/api/auth/login", json={"username": "admin"})
    assert (status, body) == (400, {"code": 400, "message": "password: field required"})
    status, body = anon.post(
        "/api/auth/login", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert (status, body["message"]) == (400, "request body is not valid JSON")


def test_login_rate_limit_counts_before_parsing_and_resets_on_success(admin: Api, anon: Api) -> None:
    before = admin.ok("GET", "/api/admin/configs/category/security")
    for key, value in (("login_rate_limit_max", 3), ("login_rate_limit_window", 2)):
        admin.ok("PUT", "/api/admin/configs", json={"key": key, "value": value})
    try:
        # A success resets the counter: two failures, a success, then three more failures are allowed.
        for _ in range(2):
            assert anon.post("/api/auth/login", json={"username": "admin", "password": "bad-pass"})[0] == 401
        anon.ok("POST", "/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
        for _ in range(3):
            assert anon.post("/api/auth/login", json={"username": "admin", "password": "bad-pass"})[0] == 401
        # Limited now, even with a body that would not parse: the check comes first.
        response = httpx.post(f"{anon.base_url}/api/auth/login", content=b"garbage")
        assert response.status_code == 429
        assert response.json()["code"] == 429 and int(response.headers["retry-after"]) >= 1
        status, _ = anon.post("/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
        assert status == 429
        time.sleep(2.2)
        anon.ok("POST", "/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
    finally:
        for key in ("login_rate_limit_max", "login_rate_limit_window"):
            admin.ok("PUT", "/api/admin/configs", json={"key": key, "value": before[key]})


def test_register_rules(admin: Api, anon: Api) -> None:
    name = f"reg{uuid.uuid4().hex[:8]}"
    data = anon.ok(
        "POST", "/api/auth/register", json={"username": name, "password": "abcdef", "email": "a@b.io"}
    )
    assert data["username"] == name and data["role"] == "user" and data["status"] == "active"
    assert data["max_concurrency"] == 10 and data["price_rate"] == 1.0

    status, body = anon.post("/api/auth/register", json={"username": name, "password": "abcdef"})
    assert (status, body["message"]) == (400, "username already exists")
    status, body = anon.post("/api/auth/register", json={"username": "ab", "password": "abcdef"})
    assert status == 400 and body["message"].startswith("username:")
    status, body = anon.post("/api/auth/register", json={"username": name + "x", "password": "abc"})
    assert status == 400 and body["message"].startswith("password:")
    status, body = anon.post(
        "/api/auth/register", json={"username": name + "y", "password": "abcdef", "email": "x"}
    )
    assert status == 400 and body["message"].startswith("email:")

    admin.ok("PUT", "/api/admin/configs", json={"key": "allow_register", "value": False})
    try:
        status, body = anon.post("/api/auth/register", json={"username": name + "z", "password": "abcdef"})
        assert (status, body["message"]) == (403, "registration is disabled")
    finally:
        admin.ok("PUT", "/api/admin/configs", json={"key": "allow_register", "value": True})
    anon.login(name, "abcdef")
    assert anon.ok("GET", "/api/profile")["username"] == name
