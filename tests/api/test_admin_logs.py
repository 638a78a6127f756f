"""Admin: request log list, detail and totals; per-account load; per-user usage."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import pytest

from ..support import Api, RelayServer
from ..usage_fixtures import TOKEN_NAMES, Call, add_accounts, day_at, record, utc_now

LIST_FIELDS = {
    "id",
    "request_id",
    "user_id",
    "username",
    "api_key_id",
    "account_id",
    "platform",
    "model",
    "upstream_model",
    "method",
    "path",
    "stream",
    "status",
    "status_code",
    *TOKEN_NAMES,
    "cost",
    "duration_ms",
    "first_byte_ms",
    "retries",
    "client_ip",
    "user_agent",
    "client_type",
    "session_hash",
    "flags",
    "error_message",
    "created_at",
}
BODY_FIELDS = {"request_headers", "request_body", "response_body"}


@dataclass
class Traffic:
    users: dict[str, dict[str, Any]]  # name → the admin API's user object
    keys: dict[str, int]
    accounts: dict[str, int]
    account_names: dict[str, str]
    calls: list[Call]
    log_ids: list[int]


def _tokens(call: Call) -> dict[str, int]:
    return {name: getattr(call, name) if call.ok else 0 for name in TOKEN_NAMES}


@pytest.fixture
def traffic(relay: RelayServer, make_user: Callable[..., Api]) -> Traffic:
    carol, dave = make_user(), make_user()
    users = {"carol": carol.user, "dave": dave.user}  # type: ignore[attr-defined]
    keys = {
        "c1": carol.ok("POST", "/api/api-keys", json={"name": "c1"})["id"],
        "c2": carol.ok("POST", "/api/api-keys", json={"name": "c2"})["id"],
        "d1": dave.ok("POST", "/api/api-keys", json={"name": "d1"})["id"],
    }
    tag = uuid.uuid4().hex[:6]
    names = {"max": f"claude-max-{tag}", "oai": f"openai-{tag}"}
    ids = add_accounts(relay, (names["max"], "claude-oauth"), (names["oai"], "openai"))
    accounts = dict(zip(names, ids, strict=True))
    c, d = users["carol"]["id"], users["dave"]["id"]
    now = utc_now()
    ago = lambda hours: now - timedelta(hours=hours)  # noqa: E731
    acc_max, acc_oai = accounts["max"], accounts["oai"]
    calls = [
        Call(c, keys["c1"], ago(0.1), account_id=acc_max, input_tokens=1200, output_tokens=300,
             cache_read_tokens=5000, stream=True, duration_ms=2400, first_byte_ms=600),
        Call(c, keys["c1"], ago(0.2), account_id=acc_max, status="error", status_code=529, duration_ms=300,
             error_message="upstream overloaded"),
        Call(c, keys["c2"], ago(2), "gpt-5", account_id=acc_oai, input_tokens=800, output_tokens=900,
             duration_ms=3100),
        Call(c, keys["c2"], ago(30), "claude-opus-4-1", account_id=acc_max, input_tokens=3000,
             output_tokens=1000, stream=True, duration_ms=9000, first_byte_ms=1400),
        Call(d, keys["d1"], ago(1), "gpt-5", account_id=acc_oai, input_tokens=500, output_tokens=50,
             duration_ms=800),
        Call(d, keys["d1"], ago(3), "gpt-5", account_id=acc_oai, status="error", status_code=429,
             duration_ms=100, error_message="rate limited"),
        Call(d, keys["d1"], ago(80), account_id=acc_max, input_tokens=4000, output_tokens=2000,
             cache_creation_tokens=1000, duration_ms=5000),
    ]  # fmt: skip
    log_ids = record(relay, calls)
    return Traffic(users, keys, accounts, names, calls, log_ids)


def test_list_filters_paging_and_fields(admin: Api, traffic: Traffic) -> None:
    t = traffic
    carol = t.users["carol"]
    mine = sorted(
        (pair for pair in zip(t.log_ids, t.calls, strict=True) if pair[1].user_id == carol["id"]),
        key=lambda pair: pair[1].at,
        reverse=True,
    )
    first = admin.ok("GET", f"/api/admin/logs?user_id={carol['id']}&page_size=3")
    assert (first["total"], first["page"], first["page_size"]) == (4, 1, 3)
    rest = admin.ok("GET", f"/api/admin/logs?user_id={carol['id']}&page_size=3&page=2")["items"]
    items = first["items"] + rest
    assert [i["id"] for i in items] == [log_id for log_id, _ in mine]
    for item, (_, call) in zip(items, mine, strict=True):
        assert set(item) == LIST_FIELDS  # bodies only in the detail view
        assert item["username"] == carol["username"] and item["created_at"].endswith("Z")
        expected = {
            "request_id": call.request_id,
            "api_key_id": call.api_key_id,
            "account_id": call.account_id,
            "model": call.model,
            "status": call.status,
            "status_code": call.status_code,
            "stream": call.stream,
            "cost": call.cost,
            "duration_ms": call.duration_ms,
            "first_byte_ms": call.first_byte_ms,
            "error_message": call.error_message,
            **_tokens(call),
        }
        assert {k: item[k] for k in expected} == expected

    def ids(query: str) -> list[int]:
        data = admin.ok("GET", f"/api/admin/logs?page_size=100&{query}")
        assert data["total"] == len(data["items"])
        return sorted(i["id"] for i in data["items"])

    def where(pred: Callable[[Call], bool]) -> list[int]:
        return sorted(log_id for log_id, call in zip(t.log_ids, t.calls, strict=True) if pred(call))

    acc = t.accounts["oai"]
    assert ids(f"account_id={acc}") == where(lambda c: c.account_id == acc)
    assert ids(f"api_key_id={t.keys['c2']}") == where(lambda c: c.api_key_id == t.keys["c2"])
    dave_id = t.users["dave"]["id"]
    assert ids(f"user_id={dave_id}&status=error") == where(lambda c: c.user_id == dave_id and not c.ok)
    assert ids(f"user_id={carol['id']}&model=gpt-5") == where(
        lambda c: c.user_id == carol["id"] and c.model == "gpt-5"
    )
    assert ids(f"account_id={t.accounts['max']}&platform=claude") == where(
        lambda c: c.account_id == t.accounts["max"]
    )
    assert ids(f"account_id={t.accounts['max']}&platform=openai") == []
    old = min(c.day for c in t.calls)
    assert ids(f"user_id={dave_id}&start_date={old}&end_date={old}") == where(
        lambda c: c.user_id == dave_id and c.day == old
    )
    today = utc_now().date()
    assert ids(f"user_id={dave_id}&start_date={today}") == where(
        lambda c: c.user_id == dave_id and c.day >= today
    )


def test_detail_has_bodies(admin: Api, traffic: Traffic) -> None:
    t = traffic
    log_id, call = t.log_ids[1], t.calls[1]
    entry = admin.ok("GET", f"/api/admin/logs/{log_id}")
    assert set(entry) == LIST_FIELDS | BODY_FIELDS
    assert entry["id"] == log_id and entry["request_id"] == call.request_id
    assert entry["username"] == t.users["carol"]["username"]
    assert entry["error_message"] == "upstream overloaded" and entry["response_body"] == '{"type": "error"}'
    assert call.model in entry["request_body"]
    assert admin.get("/api/admin/logs/987654321") == (404, {"code": 404, "message": "request log not found"})


def _summary_of(calls: list[Call]) -> dict[str, Any]:
    billed = [c for c in calls if c.ok]
    first_bytes = [c.first_byte_ms for c in calls if c.first_byte_ms > 0]
    by_status: dict[str, int] = {}
    for call in calls:
        by_status[call.status] = by_status.get(call.status, 0) + 1
    return {
        "requests": len(calls),
        "success": len(billed),
        "errors": len(calls) - len(billed),
        **{name: sum(getattr(c, name) for c in billed) for name in TOKEN_NAMES},
        "cost": round(sum(c.cost for c in billed), 6),
        "avg_duration_ms": round(sum(c.duration_ms for c in calls) / len(calls), 2),
        "avg_first_byte_ms": round(sum(first_bytes) / len(first_bytes), 2) if first_bytes else 0.0,
        "by_status": by_status,
    }


def test_summary_totals(admin: Api, traffic: Traffic) -> None:
    t = traffic
    carol = t.users["carol"]["id"]
    data = admin.ok("GET", f"/api/admin/logs/summary?user_id={carol}")
    assert data == _summary_of([c for c in t.calls if c.user_id == carol])
    assert data["by_status"] == {"success": 3, "error": 1}
    acc = t.accounts["oai"]
    assert admin.ok("GET", f"/api/admin/logs/summary?account_id={acc}") == _summary_of(
        [c for c in t.calls if c.account_id == acc]
    )
    empty = admin.ok("GET", "/api/admin/logs/summary?user_id=987654321")
    assert empty["requests"] == 0 and empty["avg_duration_ms"] == 0.0 and empty["by_status"] == {}
    status, body = admin.get("/api/admin/logs/summary?start_date=nope")
    assert status == 400 and body["message"].startswith("start_date:")


def _load_of(calls: list[Call]) -> dict[str, Any]:
    summary = _summary_of(calls)
    summary.pop("by_status")
    return summary


def test_account_load_window_and_join(admin: Api, traffic: Traffic) -> None:
    t = traffic
    now = utc_now()
    for hours in (24, 720):
        data = admin.ok("GET", f"/api/admin/logs/account-load?hours={hours}")
        assert data["hours"] == hours
        rows = {row["account_id"]: row for row in data["items"]}
        requests = [row["requests"] for row in data["items"]]
        assert requests == sorted(requests, reverse=True)  # busiest first
        for name, account_id in t.accounts.items():
            recent = [
                c for c in t.calls if c.account_id == account_id and c.at > now - timedelta(hours=hours)
            ]
            row = rows[account_id]
            assert row["account_name"] == t.account_names[name]
            assert row["account_type"] == ("claude-oauth" if name == "max" else "openai")
            assert row["account_status"] == "valid"
            last = max(c.at for c in recent)
            assert row["last_used_at"].endswith("Z")
            assert datetime.fromisoformat(row["last_used_at"].replace("Z", "+00:00")) == last
            metrics = {k: v for k, v in row.items() if not k.startswith("account") and k != "last_used_at"}
            assert metrics == _load_of(recent), (hours, name)
    for bad in (0, 721):
        status, body = admin.get(f"/api/admin/logs/account-load?hours={bad}")
        assert status == 400 and body["message"].startswith("hours:")


def test_usage_summary_per_user(admin: Api, relay: RelayServer, make_user: Callable[..., Api]) -> None:
    # A day nobody else writes to keeps the expected list exact.
    day = date(2011, 3, 14) + timedelta(days=int(uuid.uuid4().int % 1000))
    clients = [make_user() for _ in range(3)]
    ids = [client.user["id"] for client in clients]  # type: ignore[attr-defined]
    calls = [
        Call(ids[0], None, day_at(day, 9), input_tokens=1000, output_tokens=100),
        Call(ids[1], None, day_at(day, 10), "claude-opus-4-1", input_tokens=5000, output_tokens=2000),
        Call(ids[1], None, day_at(day, 11), cache_read_tokens=20000, cache_creation_tokens=3000),
        Call(ids[2], None, day_at(day, 12), "gpt-5", input_tokens=20000, output_tokens=8000),
        Call(ids[2], None, day_at(day, 13), "gpt-5", status="error", status_code=500),
        Call(ids[0], None, day_at(day + timedelta(days=1), 9), input_tokens=99999),  # outside the range
    ]
    record(relay, calls)
    expected = []
    for client, user_id in zip(clients, ids, strict=True):
        billed = [c for c in calls if c.user_id == user_id and c.ok and c.day == day]
        expected.append(
            {
                "user_id": user_id,
                "username": client.user["username"],  # type: ignore[attr-defined]
                "total_cost": round(sum(c.cost for c in billed), 6),
                **{name: sum(getattr(c, name) for c in billed) for name in TOKEN_NAMES},
                "request_count": len(billed),
            }
        )
    expected.sort(key=lambda row: -row["total_cost"])
    assert len({row["total_cost"] for row in expected}) == 3  # distinct costs: the order is defined

    query = f"/api/admin/logs/usage-summary?start_date={day}&end_date={day}"
    first = admin.ok("GET", f"{query}&page_size=2")
    assert (first["total"], first["page"], first["page_size"]) == (3, 1, 2)
    second = admin.ok("GET", f"{query}&page_size=2&page=2")
    assert first["items"] + second["items"] == expected
    only_gpt = admin.ok("GET", f"{query}&model=gpt-5")
    assert [row["user_id"] for row in only_gpt["items"]] == [ids[2]]
    status, body = admin.get("/api/admin/logs/usage-summary?end_date=2025-02-30")
    assert status == 400 and body["message"].startswith("end_date:")


def test_users_are_refused(make_user: Callable[..., Api], anon: Api, traffic: Traffic) -> None:
    user = make_user()
    for path in (
        "/api/admin/logs",
        f"/api/admin/logs/{traffic.log_ids[0]}",
        "/api/admin/logs/summary",
        "/api/admin/logs/account-load",
        "/api/admin/logs/usage-summary",
    ):
        assert user.get(path) == (403, {"code": 403, "message": "需要管理员权限"}), path
        assert anon.get(path)[0] == 401, path
