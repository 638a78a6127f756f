"""The cache admin routes against live traffic: the bindings, marks and slots the gateway leaves and obeys.

Weighted draws are made one-sided (priority × weight 1000 × 1000 against 1 × 1: the light account
is drawn first once in about a million), so "the next request goes to the favourite" is a fact
here, not a probability worth a retry.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from datetime import datetime
from typing import Any

import httpx

from .conftest import Pool

CACHE = "/api/admin/cache"
FAVOURITE = {"priority": 1000, "weight": 1000}
SPARE = {"priority": 1, "weight": 1}
BODY = {"model": "claude-opus-4-8", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}


def _send(pool: Pool, session: str | None = None, key: str | None = None) -> httpx.Response:
    """One request; a fresh session unless one is given (so stickiness never decides by accident)."""
    headers = {"x-api-key": key or pool.key, "x-session-id": session or f"fresh-{uuid.uuid4().hex}"}
    return httpx.post(f"{pool.relay.base_url}/claude/v1/messages", json=BODY, headers=headers, timeout=30)


def _served(pool: Pool) -> dict[str, int]:
    """Requests each of the pool's accounts has received from the relay so far."""
    return {credential: len(pool.upstream.requests_for(credential)) for credential in pool.accounts}


def _reweigh(pool: Pool, heavy: str, light: str) -> None:
    pool.admin.ok("PUT", f"/api/admin/accounts/{pool.accounts[heavy]}", json=FAVOURITE)
    pool.admin.ok("PUT", f"/api/admin/accounts/{pool.accounts[light]}", json=SPARE)
    pool.settle()


def _sessions(pool: Pool, query: str = "") -> list[dict[str, Any]]:
    return pool.admin.ok("GET", f"{CACHE}/sessions?api_key_id={pool.key_id}{query}")["items"]  # type: ignore[no-any-return]


def _digest(session: str) -> str:
    return hashlib.sha256(f"h:{session}".encode()).hexdigest()[:32]


def test_a_binding_is_listed_without_the_client_session_id_and_dropping_it_lets_it_move(pool: Pool) -> None:
    first, second = pool.add_account(**FAVOURITE), pool.add_account(**SPARE)
    raw = f"client-conversation-{uuid.uuid4().hex}"
    assert _send(pool, raw).status_code == 200
    bound = next(c for c, n in _served(pool).items() if n == 1)
    free = second if bound == first else first
    _reweigh(pool, heavy=free, light=bound)  # from now on a fresh draw picks `free`
    assert _send(pool, raw).status_code == 200
    assert _served(pool) == {bound: 2, free: 0}  # the binding, not the draw, decided

    response = pool.admin.http.get(
        f"{CACHE}/sessions", params={"api_key_id": pool.key_id}, headers=pool.admin.headers()
    )
    assert raw not in response.text and raw.split("-")[-1] not in response.text
    (item,) = response.json()["data"]["items"]
    assert item["session_id"] == f"{pool.key_id}.{_digest(raw)}"
    assert (item["api_key_id"], item["user_id"], item["username"]) == (
        pool.key_id,
        pool.user_id,
        pool.user.user["username"],  # type: ignore[attr-defined]
    )
    assert (item["account_id"], item["account_name"]) == (pool.accounts[bound], f"acc-{bound}")
    assert 0 <= item["age_seconds"] <= 10 and 1790 <= item["ttl_seconds"] <= 1800  # session_ttl 30 min
    bound_at = datetime.fromisoformat(item["bound_at"].replace("Z", "+00:00")).timestamp()
    assert abs(time.time() - item["age_seconds"] - bound_at) <= 2
    # The request log keeps a shorter hash of the same session: the operator can match them.
    logs = pool.logs(expect=2)
    assert {log["session_hash"] for log in logs} == {_digest(raw)[:16]}
    time.sleep(1.1)
    assert _send(pool, raw).status_code == 200  # renewed on use, bound_at kept
    (again,) = _sessions(pool)
    assert again["bound_at"] == item["bound_at"] and again["age_seconds"] >= 1

    # Filters, and the per-user and per-account views.
    assert [s["session_id"] for s in _sessions(pool, f"&user_id={pool.user_id}")] == [item["session_id"]]
    assert [s["session_id"] for s in _sessions(pool, f"&account_id={pool.accounts[bound]}")] == [
        item["session_id"]
    ]
    assert _sessions(pool, f"&account_id={pool.accounts[free]}") == []
    (user,) = [u for u in pool.admin.ok("GET", f"{CACHE}/users") if u["id"] == pool.user_id]
    assert user["sessions"] == 1 and user["username"] == pool.user.user["username"]  # type: ignore[attr-defined]
    (account,) = [a for a in pool.admin.ok("GET", f"{CACHE}/accounts") if a["id"] == pool.accounts[bound]]
    assert (account["sessions"], account["unavailable"], account["name"]) == (1, False, f"acc-{bound}")
    assert pool.admin.ok("GET", f"{CACHE}/stats")["sessions"] >= 1

    dropped = pool.admin.ok("DELETE", f"{CACHE}/sessions/{item['session_id']}")
    assert dropped == {"session_id": item["session_id"], "removed": True}
    assert _sessions(pool) == []
    assert pool.admin.delete(f"{CACHE}/sessions/{item['session_id']}")[0] == 404
    assert _send(pool, raw).status_code == 200
    assert _served(pool) == {bound: 3, free: 1}  # drawn afresh: the favourite now
    (moved,) = _sessions(pool)
    assert moved["session_id"] == item["session_id"] and moved["account_id"] == pool.accounts[free]
    assert len(pool.logs(expect=4)) == 4  # every request logged exactly once


def test_bindings_are_dropped_per_key_per_user_and_per_account(pool: Pool) -> None:
    first = pool.add_account()
    pool.add_account()
    other_key, other_key_id = pool.new_key()
    for n in range(3):
        assert _send(pool, f"s{n}-{uuid.uuid4().hex}").status_code == 200
    assert _send(pool, key=other_key).status_code == 200
    assert pool.admin.ok("DELETE", f"{CACHE}/api-keys/{pool.key_id}") == {
        "api_key_id": pool.key_id,
        "sessions": 3,
    }
    listed = pool.admin.ok("GET", f"{CACHE}/sessions?user_id={pool.user_id}")
    assert [s["api_key_id"] for s in listed["items"]] == [other_key_id] and listed["total"] == 1
    assert pool.admin.ok("DELETE", f"{CACHE}/users/{pool.user_id}") == {
        "user_id": pool.user_id,
        "sessions": 1,
        "released": 0,
    }
    assert pool.admin.ok("GET", f"{CACHE}/sessions?user_id={pool.user_id}")["total"] == 0

    for _ in range(4):
        assert _send(pool).status_code == 200
    by_account = {
        credential: pool.admin.ok("DELETE", f"/api/admin/accounts/{account_id}/cache/sessions")
        for credential, account_id in pool.accounts.items()
    }
    assert sum(answer["sessions"] for answer in by_account.values()) == 4
    assert by_account[first]["account_id"] == pool.accounts[first]
    assert pool.admin.ok("GET", f"{CACHE}/sessions?user_id={pool.user_id}")["total"] == 0
    assert len(pool.logs(expect=7)) == 7 and len(pool.logs(other_key_id, expect=1)) == 1


def test_an_unavailable_account_gets_no_traffic_until_its_mark_ends_or_is_lifted(pool: Pool) -> None:
    marked, spare = pool.add_account(**FAVOURITE), pool.add_account(**SPARE)
    path = f"/api/admin/accounts/{pool.accounts[marked]}/cache/unavailable"
    # Long enough for the five requests and the list below on a loaded machine, short enough to wait out.
    answer = pool.admin.ok("POST", path, json={"duration": 4, "reason": "maintenance window"})
    until = datetime.fromisoformat(answer["until"].replace("Z", "+00:00")).timestamp()
    pool.settle()
    for _ in range(5):
        assert _send(pool).status_code == 200
    assert _served(pool) == {marked: 0, spare: 5}
    (held,) = [a for a in pool.admin.ok("GET", f"{CACHE}/unavailable") if a["id"] == pool.accounts[marked]]
    assert (held["status"], held["reason"]) == ("unavailable", "maintenance window")

    # It ends by itself: the favourite is drawn again, and its first request puts it back to valid.
    time.sleep(max(0.0, until - time.time()) + 0.2)
    assert _send(pool).status_code == 200
    assert _served(pool) == {marked: 1, spare: 5}
    deadline = time.monotonic() + 10
    while pool.account(marked)["status"] != "valid":
        assert time.monotonic() < deadline, pool.account(marked)
        time.sleep(0.1)
    assert all(a["id"] != pool.accounts[marked] for a in pool.admin.ok("GET", f"{CACHE}/unavailable"))

    # A long mark, lifted by an admin: back at once.
    pool.admin.ok("POST", path, json={"duration": 3600})
    pool.settle()
    for _ in range(3):
        assert _send(pool).status_code == 200
    assert _served(pool) == {marked: 1, spare: 8}
    assert pool.admin.ok("DELETE", path)["cleared"] is True
    pool.settle()
    assert _send(pool).status_code == 200
    assert _served(pool) == {marked: 2, spare: 8}
    assert len(pool.logs(expect=10)) == 10


def test_the_only_account_marked_unavailable_means_no_account(pool: Pool) -> None:
    only = pool.add_account()
    path = f"/api/admin/accounts/{pool.accounts[only]}/cache/unavailable"
    pool.admin.ok("POST", path, json={"duration": 3600, "reason": "hold"})
    pool.settle()
    refused = _send(pool)
    assert refused.status_code == 503
    assert refused.json() == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "没有可用的账户"},
    }
    assert _served(pool) == {only: 0}
    pool.admin.ok("DELETE", path)
    pool.settle()
    assert _send(pool).status_code == 200
    statuses = sorted(log["status_code"] for log in pool.logs(expect=2))
    assert statuses == [200, 503]


def test_slots_in_use_are_shown_and_reset(pool: Pool) -> None:
    credential = pool.add_account(max_concurrency=1)
    account_id = pool.accounts[credential]
    pool.upstream.behave(credential, "slow", delay_ms=3000, count=1)
    results: list[int] = []
    slow = threading.Thread(target=lambda: results.append(_send(pool).status_code))
    slow.start()
    try:
        path = f"/api/admin/accounts/{account_id}/cache/concurrency"
        deadline = time.monotonic() + 10
        while (held := pool.admin.ok("GET", path))["current"] != 1:
            assert time.monotonic() < deadline, held
            time.sleep(0.05)
        assert held["max_concurrency"] == 1 and len(held["holders"]) == 1
        (account,) = [a for a in pool.admin.ok("GET", f"{CACHE}/accounts") if a["id"] == account_id]
        assert (account["concurrency"], account["max_concurrency"]) == (1, 1)
        (user,) = [u for u in pool.admin.ok("GET", f"{CACHE}/users") if u["id"] == pool.user_id]
        assert user["concurrency"] == 1 and user["max_concurrency"] > 0
        stats = pool.admin.ok("GET", f"{CACHE}/stats")
        assert stats["users"] >= 1 and stats["accounts"] >= 1

        busy = _send(pool)  # the account's one slot is taken
        assert busy.status_code in (429, 503), busy.text
        assert pool.admin.ok("DELETE", path) == {"account_id": account_id, "released": 1}
        assert _send(pool).status_code == 200  # served beside the slow one, whose slot was dropped
        assert slow.is_alive()
        released = pool.admin.ok("DELETE", f"{CACHE}/users/{pool.user_id}")
        assert released["released"] == 1  # the slow request's user slot
    finally:
        slow.join(timeout=30)
    assert results == [200]
    assert pool.admin.ok("GET", f"/api/admin/accounts/{account_id}/cache/concurrency")["current"] == 0
    assert len(pool.logs(expect=3)) == 3
