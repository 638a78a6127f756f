"""A user's own API keys."""

from __future__ import annotations

import re
from collections.abc import Callable

from ..support import Api

KEY_RE = re.compile(r"^sk-[0-9a-f]{64}$")


def test_key_lifecycle(make_user: Callable[..., Api]) -> None:
    user = make_user()
    created = user.ok(
        "POST",
        "/api/api-keys",
        json={
            "name": "prod",
            "allowed_platforms": "claude-official, openai",
            "rate_limit": 100,
            "expires_at": "2099-12-31T23:59:59Z",
        },
    )
    raw = created["key"]
    assert KEY_RE.match(raw)
    assert created["key_prefix"] == raw[:11] + "..."
    assert created["allowed_platforms"] == "claude-official,openai"
    assert created["rate_limit"] == 100 and created["daily_limit"] == 0 and created["monthly_quota"] == 0
    assert created["expires_at"] == "2099-12-31T23:59:59Z"

    listed = user.ok("GET", "/api/api-keys")
    assert [k["id"] for k in listed] == [created["id"]]
    assert "key" not in listed[0] and raw not in str(listed)

    one = user.ok("GET", f"/api/api-keys/{created['id']}")
    assert one["name"] == "prod" and one["status"] == "active"
    assert user.ok("GET", f"/api/api-keys/{created['id']}/reveal")["key"] == raw

    updated = user.ok(
        "PUT",
        f"/api/api-keys/{created['id']}",
        json={"name": "renamed", "rate_limit": 120, "expires_at": None},
    )
    assert (updated["name"], updated["rate_limit"], updated["expires_at"]) == ("renamed", 120, None)
    assert updated["allowed_platforms"] == "claude-official,openai"

    assert user.ok("PUT", f"/api/api-keys/{created['id']}/toggle") == {
        "id": created["id"],
        "status": "disabled",
    }
    assert user.ok("PUT", f"/api/api-keys/{created['id']}/toggle")["status"] == "active"
    assert (
        user.ok("PUT", f"/api/api-keys/{created['id']}", json={"status": "disabled"})["status"] == "disabled"
    )

    assert user.ok("DELETE", f"/api/api-keys/{created['id']}") is None
    assert user.get(f"/api/api-keys/{created['id']}")[0] == 404


def test_defaults_and_bad_input(make_user: Callable[..., Api]) -> None:
    user = make_user()
    key = user.ok("POST", "/api/api-keys", json={"name": "defaults"})
    assert key["allowed_platforms"] == "all" and key["allowed_models"] == "" and key["rate_limit"] == 60
    cases = [
        ({}, "name: field required"),
        ({"name": ""}, "name:"),
        ({"name": "x", "rate_limit": -1}, "rate_limit:"),
        ({"name": "x", "monthly_quota": "lots"}, "monthly_quota:"),
        ({"name": "x", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at: must be in the future"),
        ({"name": "x", "expires_at": "soon"}, "expires_at:"),
        ({"name": "x", "allowed_models": "a;b"}, "allowed_models:"),
    ]
    for payload, message in cases:
        status, body = user.post("/api/api-keys", json=payload)
        assert status == 400 and body["message"].startswith(message), (payload, body)
    assert len(user.ok("GET", "/api/api-keys")) == 1  # nothing half-created


def test_at_most_ten_keys(make_user: Callable[..., Api]) -> None:
    user = make_user()
    for i in range(10):
        user.ok("POST", "/api/api-keys", json={"name": f"k{i}"})
    status, body = user.post("/api/api-keys", json={"name": "eleventh"})
    assert status == 400 and "10" in body["message"]
    assert len(user.ok("GET", "/api/api-keys")) == 10


def test_keys_are_private_to_their_owner(make_user: Callable[..., Api], admin: Api) -> None:
    alice, bob = make_user(), make_user()
    key = alice.ok("POST", "/api/api-keys", json={"name": "alice"})
    for method, suffix in (("GET", ""), ("GET", "/reveal"), ("PUT", "/toggle"), ("DELETE", "")):
        status, body = bob.call(method, f"/api/api-keys/{key['id']}{suffix}")
        assert status == 404 and body["code"] == 404
    # Not even an admin can reveal someone else's key.
    assert admin.get(f"/api/api-keys/{key['id']}/reveal")[0] == 404
    assert alice.ok("GET", f"/api/api-keys/{key['id']}")["status"] == "active"
