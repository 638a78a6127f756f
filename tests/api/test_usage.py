"""A user's own usage views, checked against history written into the relay's database."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest

from ..support import Api, RelayServer
from ..usage_fixtures import TOKEN_NAMES, Call, day_at, record, today_at_latest, utc_now

RECORD_FIELDS = {
    "id",
    "request_id",
    "api_key_id",
    "model",
    "platform",
    "input_tokens",
    "output_tokens",
    "cache_creation_tokens",
    "cache_read_tokens",
    "total_tokens",
    "cost",
    "created_at",
}


def totals(calls: Iterable[Call], cost_key: str = "total_cost") -> dict[str, Any]:
    billed = [c for c in calls if c.ok]
    data: dict[str, Any] = {cost_key: round(sum(c.cost for c in billed), 6)}
    data.update({name: sum(getattr(c, name) for c in billed) for name in TOKEN_NAMES})
    data["request_count"] = len(billed)
    return data


def brief(calls: Iterable[Call]) -> dict[str, Any]:
    t = totals(calls)
    return {"cost": t["total_cost"], "tokens": t["total_tokens"], "requests": t["request_count"]}


def summary_of(calls: list[Call], today: date) -> dict[str, Any]:
    return {**totals(calls), "today": brief(c for c in calls if c.day == today)}


def daily_of(calls: Iterable[Call], start: date, end: date) -> list[dict[str, Any]]:
    by_day: dict[date, list[Call]] = defaultdict(list)
    for call in calls:
        if call.ok and start <= call.day <= end:
            by_day[call.day].append(call)
    return [{"date": day.isoformat(), **totals(by_day[day], "cost")} for day in sorted(by_day)]


def models_of(calls: Iterable[Call]) -> list[dict[str, Any]]:
    by_model: dict[str, list[Call]] = defaultdict(list)
    for call in calls:
        if call.ok:
            by_model[call.model].append(call)
    items = [{"model": model, **totals(group)} for model, group in by_model.items()]
    return sorted(items, key=lambda item: (-item["total_cost"], item["model"]))


@dataclass
class History:
    alice: Api
    bob: Api
    keys: dict[str, int]
    calls: list[Call]  # alice's
    bob_calls: list[Call]
    today: date


def _key(client: Api, name: str) -> int:
    return int(client.ok("POST", "/api/api-keys", json={"name": name})["id"])


@pytest.fixture
def history(relay: RelayServer, make_user: Callable[..., Api]) -> History:
    alice, bob = make_user(), make_user()
    a, b = alice.user["id"], bob.user["id"]  # type: ignore[attr-defined]
    keys = {"a1": _key(alice, "laptop"), "a2": _key(alice, "ci"), "b1": _key(bob, "bob")}
    today = utc_now().date()
    ago = lambda days, hour=12, minute=0: day_at(today - timedelta(days=days), hour, minute)  # noqa: E731
    calls = [
        Call(a, keys["a1"], today_at_latest(1), input_tokens=1000, output_tokens=500,
             cache_creation_tokens=200, cache_read_tokens=3000),
        Call(a, keys["a2"], today_at_latest(2), "claude-opus-4-1", input_tokens=2000, output_tokens=800),
        Call(a, keys["a1"], ago(1, 10), input_tokens=5000, output_tokens=1000, cache_read_tokens=10000),
        Call(a, keys["a2"], ago(1, 23, 59), "gpt-5", input_tokens=3000, output_tokens=1500,
             cache_read_tokens=500),
        Call(a, keys["a1"], ago(3), "claude-opus-4-1", input_tokens=10000, output_tokens=4000,
             cache_creation_tokens=1000, price_rate=0.5),
        Call(a, keys["a1"], ago(3, 13), status="error", status_code=529, error_message="overloaded"),
        Call(a, keys["a1"], ago(40), input_tokens=100000, output_tokens=20000),
        Call(a, keys["a2"], ago(75), "gpt-5", input_tokens=7000, output_tokens=3000),
    ]  # fmt: skip
    bob_calls = [
        Call(b, keys["b1"], today_at_latest(3), input_tokens=999, output_tokens=111),
        Call(b, keys["b1"], ago(1), "gpt-5", input_tokens=4000, output_tokens=2000),
    ]
    record(relay, calls + bob_calls)
    return History(alice, bob, keys, calls, bob_calls, today)


def test_summary_stats_and_rollup_agree(history: History) -> None:
    h = history
    summary = h.alice.ok("GET", "/api/usage/summary")
    assert summary == summary_of(h.calls, h.today)
    assert summary["request_count"] == 7  # the failed call is logged but not billed
    # The db/* routes read the daily roll-up and must give the very same numbers.
    assert h.alice.ok("GET", "/api/usage/db/summary") == summary
    assert h.bob.ok("GET", "/api/usage/summary") == summary_of(h.bob_calls, h.today)
    assert h.bob.ok("GET", "/api/usage/db/summary") == summary_of(h.bob_calls, h.today)

    month = [c for c in h.calls if (c.day.year, c.day.month) == (h.today.year, h.today.month)]
    stats = h.alice.ok("GET", "/api/usage/stats")
    assert stats == {
        "today": brief(c for c in h.calls if c.day == h.today),
        "this_month": brief(month),
        "all_time": brief(h.calls),
        "active_keys": 2,
    }
    h.alice.ok("PUT", f"/api/api-keys/{h.keys['a2']}/toggle")
    assert h.alice.ok("GET", "/api/usage/stats")["active_keys"] == 1


def test_daily_series_default_window_and_range(history: History) -> None:
    h = history
    window = daily_of(h.calls, h.today - timedelta(days=29), h.today)
    assert [d["date"] for d in window] == sorted({c.day.isoformat() for c in h.calls if c.ok})[-3:]
    assert h.alice.ok("GET", "/api/usage/daily") == window
    assert h.alice.ok("GET", "/api/usage/db/daily") == window

    start, end = h.today - timedelta(days=75), h.today - timedelta(days=1)
    query = f"?start_date={start.isoformat()}&end_date={end.isoformat()}"
    expected = daily_of(h.calls, start, end)
    assert len(expected) == 4
    assert h.alice.ok("GET", f"/api/usage/daily{query}") == expected
    assert h.alice.ok("GET", f"/api/usage/db/daily{query}") == expected
    # Only an end date: the 30 days up to it.
    only_end = f"?end_date={end.isoformat()}"
    expected = daily_of(h.calls, end - timedelta(days=29), end)
    assert h.alice.ok("GET", f"/api/usage/daily{only_end}") == expected


def test_monthly_totals(history: History) -> None:
    h = history
    current = h.alice.ok("GET", "/api/usage/monthly")
    in_month = [c for c in h.calls if (c.day.year, c.day.month) == (h.today.year, h.today.month)]
    assert current == {"year": h.today.year, "month": h.today.month, **totals(in_month)}

    old = h.today - timedelta(days=40)
    data = h.alice.ok("GET", f"/api/usage/monthly?year={old.year}&month={old.month}")
    in_old = [c for c in h.calls if (c.day.year, c.day.month) == (old.year, old.month)]
    assert data == {"year": old.year, "month": old.month, **totals(in_old)}
    assert data["request_count"] >= 1
    assert h.alice.ok("GET", "/api/usage/monthly?year=2001&month=2")["request_count"] == 0


def _record_view(call: Call) -> dict[str, Any]:
    return {
        "request_id": call.request_id,
        "api_key_id": call.api_key_id,
        "model": call.model,
        "platform": call.platform,
        **{name: getattr(call, name) for name in TOKEN_NAMES},
        "cost": call.cost,
    }


def test_records_paging_and_filters(history: History) -> None:
    h = history
    billed = sorted((c for c in h.calls if c.ok), key=lambda c: c.at, reverse=True)
    first = h.alice.ok("GET", "/api/usage/records?page_size=3")
    assert (first["total"], first["page"], first["page_size"]) == (len(billed), 1, 3)
    second = h.alice.ok("GET", "/api/usage/records?page_size=3&page=2")
    items = first["items"] + second["items"]
    assert [i["request_id"] for i in items] == [c.request_id for c in billed[:6]]
    for item, call in zip(items, billed, strict=False):
        assert set(item) == RECORD_FIELDS  # no account ids for users
        assert {k: v for k, v in item.items() if k not in ("id", "created_at")} == _record_view(call)
        assert item["created_at"].endswith("Z")

    def request_ids(query: str, client: Api | None = None) -> list[str]:
        data = (client or h.alice).ok("GET", f"/api/usage/records?page_size=100&{query}")
        assert data["total"] == len(data["items"])
        return [i["request_id"] for i in data["items"]]

    assert request_ids("model=gpt-5") == [c.request_id for c in billed if c.model == "gpt-5"]
    assert request_ids(f"api_key_id={h.keys['a2']}") == [
        c.request_id for c in billed if c.api_key_id == h.keys["a2"]
    ]
    yesterday = (h.today - timedelta(days=1)).isoformat()
    assert request_ids(f"start_date={yesterday}&end_date={yesterday}") == [
        c.request_id for c in billed if c.day.isoformat() == yesterday
    ]
    # Someone else's key filters to nothing; bob never sees alice's records.
    assert request_ids(f"api_key_id={h.keys['b1']}") == []
    assert set(request_ids("", h.bob)) == {c.request_id for c in h.bob_calls}


def test_models_breakdown(history: History) -> None:
    h = history
    expected = models_of(h.calls)
    costs = [m["total_cost"] for m in expected]
    assert len(expected) == 3 and costs[0] > costs[1] > costs[2]  # the order is meaningful
    assert h.alice.ok("GET", "/api/usage/models") == expected
    assert h.alice.ok("GET", "/api/usage/db/models") == expected
    start = (h.today - timedelta(days=1)).isoformat()
    recent = [c for c in h.calls if c.day >= h.today - timedelta(days=1)]
    assert h.alice.ok("GET", f"/api/usage/models?start_date={start}") == models_of(recent)
    assert h.alice.ok("GET", f"/api/usage/db/models?start_date={start}") == models_of(recent)


def test_key_usage_is_owner_only(history: History) -> None:
    h = history
    key = h.keys["a1"]
    data = h.alice.ok("GET", f"/api/api-keys/{key}/usage")
    mine = [c for c in h.calls if c.api_key_id == key]
    start = h.today - timedelta(days=29)
    assert data["api_key_id"] == key and data["name"] == "laptop" and data["key_prefix"].startswith("sk-")
    assert data["summary"] == summary_of(mine, h.today)
    assert (data["start_date"], data["end_date"]) == (start.isoformat(), h.today.isoformat())
    assert data["daily"] == daily_of(mine, start, h.today)

    not_found = (404, {"code": 404, "message": "API Key 不存在"})
    assert h.bob.get(f"/api/api-keys/{key}/usage") == not_found
    assert h.alice.get(f"/api/api-keys/{h.keys['b1']}/usage") == not_found
    assert h.alice.get("/api/api-keys/99999999/usage") == not_found


def test_bad_parameters_are_named(make_user: Callable[..., Api], anon: Api) -> None:
    user = make_user()
    for path, field in (
        ("/api/usage/daily?start_date=2025-13-01", "start_date"),
        ("/api/usage/daily?end_date=yesterday", "end_date"),
        ("/api/usage/db/daily?start_date=2025/01/01", "start_date"),
        ("/api/usage/records?end_date=31-12-2025", "end_date"),
        ("/api/usage/models?start_date=x", "start_date"),
        ("/api/usage/daily?start_date=2025-02-01&end_date=2025-01-01", "start_date"),
        ("/api/usage/monthly?month=13", "month"),
        ("/api/usage/monthly?month=0", "month"),
        ("/api/usage/monthly?year=abc", "year"),
    ):
        status, body = user.get(path)
        assert status == 400 and body["code"] == 400, (path, body)
        assert body["message"].startswith(f"{field}:"), (path, body)
    assert user.ok("GET", "/api/usage/daily?start_date=2025-01-01&end_date=2025-01-01") == []
    for path in ("/api/usage/summary", "/api/usage/stats", "/api/usage/db/daily", "/api/api-keys/1/usage"):
        assert anon.get(path)[0] == 401, path


def test_new_user_has_zeros(make_user: Callable[..., Api]) -> None:
    user = make_user()
    zero = {"cost": 0.0, "tokens": 0, "requests": 0}
    empty = {"total_cost": 0.0, **dict.fromkeys(TOKEN_NAMES, 0), "request_count": 0}
    assert user.ok("GET", "/api/usage/summary") == {**empty, "today": zero}
    assert user.ok("GET", "/api/usage/db/summary") == {**empty, "today": zero}
    assert user.ok("GET", "/api/usage/stats") == {
        "today": zero,
        "this_month": zero,
        "all_time": zero,
        "active_keys": 0,
    }
    assert user.ok("GET", "/api/usage/records") == {"items": [], "total": 0, "page": 1, "page_size": 20}
    assert user.ok("GET", "/api/usage/models") == []
