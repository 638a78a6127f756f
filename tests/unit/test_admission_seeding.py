"""Admission seeds a missing counter from the database once, for every request that finds it missing
at the same moment (a new key, day or month, or a Redis that lost its data), not once per request:
hundreds of requests in flight would otherwise each read the database at once, which exhausts the
connection pool and the database server's connection limit."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest

from aiproxy.billing.pricing import ModelPrice, Prices
from aiproxy.gateway import admission as admission_module
from aiproxy.gateway.admission import Admission, Request
from aiproxy.gateway.auth import Caller
from aiproxy.gateway.errors import GatewayError
from aiproxy.store.state import MemoryState

PRICE = ModelPrice("claude-sonnet-4-5", "claude-official", True, Prices(3.0, 15.0, 3.75, 0.3))
REQUEST = Request(
    "claude-sonnet-4-5",
    frozenset({"claude-official"}),
    payload={"max_tokens": 100},
    body_size=400,
    price=PRICE,
    rate=1.0,
)


def _caller(daily_limit: int, monthly_quota: float) -> Caller:
    return Caller(
        key_id=7,
        user_id=7,
        username="u",
        key_status="active",
        user_status="active",
        expires_at=None,
        allowed_platforms=None,
        allowed_models=None,
        rate_limit=0,
        daily_limit=daily_limit,
        monthly_quota=monthly_quota,
        key_price_rate=1.0,
        user_price_rate=1.0,
        user_max_concurrency=0,
        account_group_id=None,
    )


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The database reads admission makes to seed the key's day and month, counted (and slow enough
    for every request of a burst to find the counters missing)."""
    seen: dict[str, Any] = {"day": 0, "month": 0, "day_value": 0.0, "fail": False}

    async def requests_since(_db: object, _key_id: int, _since: datetime) -> float:
        seen["day"] += 1
        await asyncio.sleep(0.05)
        if seen["fail"]:
            raise ConnectionError("database unreachable")
        return float(seen["day_value"])

    async def cost_since(_db: object, _key_id: int, _since: datetime) -> float:
        seen["month"] += 1
        await asyncio.sleep(0.05)
        return 0.0

    monkeypatch.setattr(admission_module.counters, "key_requests_since", requests_since)
    monkeypatch.setattr(admission_module.counters, "key_cost_since", cost_since)
    return seen


async def test_a_burst_seeds_each_counter_once_and_counts_exactly(reads: dict[str, Any]) -> None:
    admission = Admission(MemoryState(), db=None, holder_lease=lambda: 60.0)  # type: ignore[arg-type]
    reads["day_value"] = 90.0  # served earlier today, by the database's record
    caller = _caller(daily_limit=100, monthly_quota=1000.0)

    async def admit(i: int) -> bool:
        try:
            await admission.admit(caller, f"req-{i}", REQUEST, require_package=False)
        except GatewayError as refused:
            assert refused.status == 429
            return False
        return True

    admitted = await asyncio.gather(*(admit(i) for i in range(200)))
    assert (reads["day"], reads["month"]) == (1, 1)
    assert sum(admitted) == 10  # what the seeded day had left
    assert admission._seeding == {}


async def test_a_failed_seed_fails_its_waiters_and_the_next_request_seeds_again(
    reads: dict[str, Any],
) -> None:
    admission = Admission(MemoryState(), db=None, holder_lease=lambda: 60.0)  # type: ignore[arg-type]
    caller = _caller(daily_limit=5, monthly_quota=0.0)
    reads["fail"] = True
    outcomes = await asyncio.gather(
        *(admission.admit(caller, f"req-{i}", REQUEST, require_package=False) for i in range(20)),
        return_exceptions=True,
    )
    assert all(isinstance(outcome, ConnectionError) for outcome in outcomes) and reads["day"] == 1
    reads["fail"] = False
    await admission.admit(caller, "req-again", REQUEST, require_package=False)
    assert reads["day"] == 2
