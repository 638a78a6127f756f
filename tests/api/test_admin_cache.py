"""Admin: the live cache routes — shapes, validation, 404s, account marks, concurrency and config.

What real traffic leaves behind (bindings, slots) and how the gateway obeys the routes is in
tests/gateway/test_cache_admin.py; two instances sharing one state in test_cache_instances.py.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime

import pytest

from ..support import Api, RelayServer
from .test_admin_accounts import ACCOUNTS, assert_bumped, create_account, pool_version

CACHE = "/api/admin/cache"
MISSING_ACCOUNT = {"code": 404, "message": "account not found"}
DEFAULTS = {"session_ttl": 30, "rate_limit_cooldown": 3600, "overload_cooldown": 60}


@pytest.fixture
def restore_cache_config(admin: Api) -> Iterator[None]:
    yield
    admin.ok("PUT", f"{CACHE}/config", json=DEFAULTS)


def _seconds_until(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() - time.time()


def test_stats_and_lists_have_their_shapes(admin: Api) -> None:
    stats = admin.ok("GET", f"{CACHE}/stats")
    assert set(stats) == {"sessions", "users", "accounts", "unavailable"}
    assert all(isinstance(v, int) and v >= 0 for v in stats.values())
    listed = admin.ok("GET", f"{CACHE}/sessions?page=1&page_size=5")
    assert set(listed) == {"items", "total", "page", "page_size"} and listed["page_size"] == 5
    assert isinstance(listed["total"], int) and isinstance(listed["items"], list)
    for path in ("accounts", "users", "unavailable"):
        assert isinstance(admin.ok("GET", f"{CACHE}/{path}"), list)
    # A filter on a key nobody has answers an empty page, not an error.
    assert admin.ok("GET", f"{CACHE}/sessions?api_key_id=999999999&user_id=999999999")["items"] == []
    for bad in ("api_key_id=0", "account_id=x", "user_id=-1", "page=0"):
        status, body = admin.get(f"{CACHE}/sessions?{bad}")
        assert status == 400 and body["code"] == 400, bad


def test_unknown_ids_are_404_and_malformed_session_ids_400(admin: Api) -> None:
    missing_session = f"{CACHE}/sessions/12.{'0' * 32}"
    assert admin.delete(missing_session) == (404, {"code": 404, "message": "session not found"})
    for bad in ("12", "12.xyz", f"0.{'0' * 32}", f"12.{'A' * 32}", f"12.{'0' * 33}"):
        status, body = admin.delete(f"{CACHE}/sessions/{bad}")
        assert status == 400 and body["code"] == 400 and body["message"].startswith("session_id:"), bad
    assert admin.delete(f"{CACHE}/users/999999999") == (404, {"code": 404, "message": "user not found"})
    assert admin.delete(f"{CACHE}/api-keys/999999999") == (404, {"code": 404, "message": "API Key 不存在"})
    account = f"{ACCOUNTS}/999999999/cache"
    assert admin.delete(f"{account}/sessions") == (404, MISSING_ACCOUNT)
    assert admin.post(f"{account}/unavailable", json={"duration": 60}) == (404, MISSING_ACCOUNT)
    assert admin.delete(f"{account}/unavailable") == (404, MISSING_ACCOUNT)
    assert admin.get(f"{account}/concurrency") == (404, MISSING_ACCOUNT)
    assert admin.put(f"{account}/concurrency", json={"limit": 1}) == (404, MISSING_ACCOUNT)
    assert admin.delete(f"{account}/concurrency") == (404, MISSING_ACCOUNT)


def test_clear_by_type_answers_what_went(admin: Api) -> None:
    expected = {
        "sessions": {"sessions"},
        "users": {"users", "user_slots"},
        "accounts": {"accounts", "account_slots"},
        "unavailable": {"unavailable"},
    }
    for kind, keys in expected.items():
        data = admin.ok("POST", f"{CACHE}/clear", json={"type": kind})
        assert data["type"] == kind and set(data["cleared"]) == keys, data
    everything = admin.ok("POST", f"{CACHE}/clear", json={"type": "all"})
    assert set(everything["cleared"]) == set().union(*expected.values())
    assert admin.ok("GET", f"{CACHE}/stats")["unavailable"] == 0
    for body in ({"type": "everything"}, {}, {"type": 1}, []):
        status, answer = admin.post(f"{CACHE}/clear", json=body)
        assert status == 400 and answer["code"] == 400, body


def test_clearing_a_user_and_a_key(admin: Api, make_user: Callable[..., Api]) -> None:
    user = make_user()
    uid = user.user["id"]  # type: ignore[attr-defined]
    key = user.ok("POST", "/api/api-keys", json={"name": "k"})
    assert admin.ok("DELETE", f"{CACHE}/users/{uid}") == {"user_id": uid, "sessions": 0, "released": 0}
    assert admin.ok("DELETE", f"{CACHE}/api-keys/{key['id']}") == {"api_key_id": key["id"], "sessions": 0}


def test_config_reads_and_writes_the_runtime_configs(admin: Api, restore_cache_config: None) -> None:
    assert set(admin.ok("GET", f"{CACHE}/config")) == set(DEFAULTS)
    changed = admin.ok("PUT", f"{CACHE}/config", json={"session_ttl": 45})
    assert changed["session_ttl"] == 45
    assert (
        changed["rate_limit_cooldown"]
        == admin.ok("GET", "/api/admin/configs")["proxy"]["rate_limit_cooldown"]
    )
    assert admin.ok("GET", "/api/admin/configs")["proxy"]["session_ttl"] == 45
    both = admin.ok("PUT", f"{CACHE}/config", json={"rate_limit_cooldown": "600", "overload_cooldown": 30})
    assert (both["session_ttl"], both["rate_limit_cooldown"], both["overload_cooldown"]) == (45, 600, 30)
    assert admin.ok("PUT", f"{CACHE}/config", json={}) == both
    refused = [
        ({"session_ttl": 0}, "config 'session_ttl' must be >= 1"),
        ({"overload_cooldown": 1.5}, "config 'overload_cooldown' expects an integer value"),
        ({"session_ttl": None}, "config 'session_ttl' expects an integer value"),
        ({"rate_limit_cooldown": "soon"}, "config 'rate_limit_cooldown' expects an integer value"),
        # Checked together: a valid first field is not saved when the second is refused.
        ({"session_ttl": 50, "overload_cooldown": -1}, "config 'overload_cooldown' must be >= 1"),
    ]
    for body, message in refused:
        assert admin.put(f"{CACHE}/config", json=body) == (400, {"code": 400, "message": message}), body
    status, answer = admin.put(f"{CACHE}/config", json={"session_ttl": 40, "timeout": 5})
    assert status == 400 and answer["message"].startswith("timeout:"), answer
    assert admin.ok("GET", f"{CACHE}/config") == both


def test_mark_unavailable_and_lift(admin: Api, relay: RelayServer) -> None:
    account = create_account(admin)
    path = f"{ACCOUNTS}/{account['id']}/cache/unavailable"
    before = pool_version(relay)
    marked = admin.ok("POST", path, json={"duration": 3600, "reason": "vendor maintenance"})
    assert (marked["account_id"], marked["status"], marked["reason"]) == (
        account["id"],
        "unavailable",
        "vendor maintenance",
    )
    assert 3590 < _seconds_until(marked["until"]) <= 3600
    before = assert_bumped(relay, before)
    shown = admin.ok("GET", f"{ACCOUNTS}/{account['id']}")
    assert (shown["status"], shown["status_reason"], shown["rate_limited_until"]) == (
        "unavailable",
        "vendor maintenance",
        None,
    )
    assert shown["overloaded_until"] == marked["until"]
    assert admin.ok("GET", f"{ACCOUNTS}?status=unavailable&keyword={account['name']}")["total"] == 1
    (held,) = [a for a in admin.ok("GET", f"{CACHE}/unavailable") if a["id"] == account["id"]]
    assert (held["status"], held["reason"], held["until"]) == (
        "unavailable",
        "vendor maintenance",
        marked["until"],
    )
    assert 3500 < held["remaining_seconds"] <= 3600
    (live,) = [a for a in admin.ok("GET", f"{CACHE}/accounts") if a["id"] == account["id"]]
    assert (live["unavailable"], live["until"], live["sessions"], live["concurrency"]) == (
        True,
        marked["until"],
        0,
        0,
    )
    assert admin.ok("GET", f"{CACHE}/stats")["unavailable"] >= 1

    # Without a reason it says who did it; the health check never lifts it (not out of rotation
    # by traffic), only its end or an admin does.
    assert admin.ok("POST", path, json={"duration": 60})["reason"] == "marked unavailable by an admin"
    lifted = admin.ok("DELETE", path)
    assert lifted == {"account_id": account["id"], "status": "valid", "cleared": True}
    assert_bumped(relay, before)
    shown = admin.ok("GET", f"{ACCOUNTS}/{account['id']}")
    assert (shown["status"], shown["status_reason"], shown["overloaded_until"]) == ("valid", "", None)
    assert all(a["id"] != account["id"] for a in admin.ok("GET", f"{CACHE}/unavailable"))
    # Lifting again changes nothing.
    assert admin.ok("DELETE", path) == {"account_id": account["id"], "status": "valid", "cleared": False}

    # A cooldown is lifted the same way; an invalid account is not brought back by a mark's end.
    admin.ok("PUT", f"{ACCOUNTS}/{account['id']}/status", json={"status": "rate_limited"})
    (held,) = [a for a in admin.ok("GET", f"{CACHE}/unavailable") if a["id"] == account["id"]]
    assert (held["status"], held["until"], held["remaining_seconds"]) == ("rate_limited", None, None)
    assert admin.ok("DELETE", path)["cleared"] is True
    admin.ok("PUT", f"{ACCOUNTS}/{account['id']}/status", json={"status": "invalid"})
    status, body = admin.post(path, json={"duration": 60})
    assert status == 400 and body["message"].startswith("account is invalid"), body
    assert admin.ok("DELETE", path) == {"account_id": account["id"], "status": "invalid", "cleared": False}


def test_unavailable_body_is_checked(admin: Api) -> None:
    path = f"{ACCOUNTS}/{create_account(admin)['id']}/cache/unavailable"
    for body in (
        {},
        {"duration": 0},
        {"duration": 30 * 86400 + 1},
        {"duration": "60"},
        {"duration": 1.5},
        {"duration": 60, "reason": "x" * 201},
    ):
        status, answer = admin.post(path, json=body)
        assert status == 400 and answer["code"] == 400, (body, answer)
    assert (
        admin.ok("POST", path, json={"duration": 30 * 86400, "reason": "x" * 200})["status"] == "unavailable"
    )
    # Set by hand through the status route it has no end: it lasts until an admin changes it.
    account = create_account(admin)
    admin.ok("PUT", f"{ACCOUNTS}/{account['id']}/status", json={"status": "unavailable", "reason": "hold"})
    (held,) = [a for a in admin.ok("GET", f"{CACHE}/unavailable") if a["id"] == account["id"]]
    assert (held["status"], held["reason"], held["until"]) == ("unavailable", "hold", None)
    admin.ok("POST", f"{CACHE}/clear", json={"type": "unavailable"})
    assert admin.ok("GET", f"{ACCOUNTS}/{account['id']}")["status"] == "valid"


def test_account_concurrency(admin: Api, relay: RelayServer) -> None:
    account = create_account(admin, max_concurrency=2)
    path = f"{ACCOUNTS}/{account['id']}/cache/concurrency"
    assert admin.ok("GET", path) == {
        "account_id": account["id"],
        "current": 0,
        "max_concurrency": 2,
        "holders": [],
    }
    before = pool_version(relay)
    assert admin.ok("PUT", path, json={"limit": 7}) == {
        "account_id": account["id"],
        "current": 0,
        "max_concurrency": 7,
    }
    assert_bumped(relay, before)
    assert admin.ok("GET", f"{ACCOUNTS}/{account['id']}")["max_concurrency"] == 7
    assert admin.ok("PUT", path, json={"limit": 0})["max_concurrency"] == 0  # unlimited
    for body in ({"limit": -1}, {"limit": "3"}, {"limit": 100001}, {}):
        status, answer = admin.put(path, json=body)
        assert status == 400 and answer["code"] == 400, body
    assert admin.ok("DELETE", path) == {"account_id": account["id"], "released": 0}


def test_cache_writes_are_audited(admin: Api) -> None:
    name = f"audit-{uuid.uuid4().hex[:6]}"
    account = create_account(admin, name=name)
    admin.ok("DELETE", f"{ACCOUNTS}/{account['id']}/cache/concurrency")
    admin.ok("POST", f"{CACHE}/clear", json={"type": "sessions"})
    logs = admin.ok("GET", "/api/admin/operation-logs?page_size=5")["items"]
    assert logs[0]["path"] == f"{CACHE}/clear" and logs[0]["action"] == "clear"
    assert logs[1]["path"] == f"{ACCOUNTS}/{account['id']}/cache/concurrency"
    assert logs[1]["action"] == "reset-concurrency"


def test_users_are_refused(make_user: Callable[..., Api]) -> None:
    user = make_user()
    refused = (403, {"code": 403, "message": "需要管理员权限"})
    assert user.get(f"{CACHE}/stats") == refused
    assert user.post(f"{CACHE}/clear", json={"type": "all"}) == refused
    assert user.put(f"{CACHE}/config", json={"session_ttl": 1}) == refused
    assert user.post(f"{ACCOUNTS}/1/cache/unavailable", json={"duration": 60}) == refused
