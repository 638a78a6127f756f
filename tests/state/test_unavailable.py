"""A Redis that is down or stalled: bounded waits, one exception, fail fast, recover by itself.

Each test runs its own `redis-server` (tests/redis_server.py) and kills or stops only that one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from aiproxy.billing.pricing import ModelPrice, Prices
from aiproxy.errors import ServiceUnavailable
from aiproxy.gateway.admission import Admission, Request, Ticket
from aiproxy.gateway.auth import Caller
from aiproxy.gateway.errors import STATE_UNAVAILABLE, GatewayError
from aiproxy.gateway.limits import Limits
from aiproxy.store.db import Database
from aiproxy.store.models import Base
from aiproxy.store.state import RedisState, StateUnavailable

from ..redis_server import RedisServer

TIMEOUT = 0.3
RETRY_INTERVAL = 0.4


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()


@pytest.fixture
async def state(server: RedisServer) -> AsyncIterator[RedisState]:
    """Overrides the package's memory/Redis ``state`` fixture: here it is always the private server."""
    backend = RedisState.from_url(server.url, timeout=TIMEOUT, retry_interval=RETRY_INTERVAL)
    try:
        yield backend
    finally:
        await backend.close()


async def _fails(state: RedisState) -> float:
    """Seconds one operation took to raise StateUnavailable."""
    started = time.monotonic()
    with pytest.raises(StateUnavailable) as caught:
        await state.incr("counter")
    assert caught.value.reason  # the cause, for the server log
    return time.monotonic() - started


def test_state_unavailable_is_a_503() -> None:
    exc = StateUnavailable("ConnectionError: refused")
    assert isinstance(exc, ServiceUnavailable) and exc.status_code == 503
    assert exc.message == StateUnavailable.default_message and exc.reason == "ConnectionError: refused"


async def test_dead_redis_fails_fast_then_recovers(server: RedisServer, state: RedisState) -> None:
    assert await state.incr("counter") == 1 and state.available
    server.stop()

    assert await _fails(state) < TIMEOUT
    assert not state.available
    # The breaker is open: the next calls do not even try.
    for _ in range(5):
        assert await _fails(state) < 0.01
    assert await state.ping() is False

    server.start()  # same port, empty (no persistence)
    await asyncio.sleep(RETRY_INTERVAL)
    assert await state.incr("counter") == 1  # the probe goes through and closes the breaker
    assert state.available and await state.ping() is True


async def test_stalled_redis_costs_one_timeout(server: RedisServer, state: RedisState) -> None:
    await state.set("k", "v")
    server.pause()
    try:
        first = await _fails(state)
        assert TIMEOUT * 0.8 < first < TIMEOUT + 0.5, first
        assert await _fails(state) < 0.01  # failing fast, not waiting on the stalled server again
        await asyncio.sleep(RETRY_INTERVAL)
        assert await _fails(state) < TIMEOUT + 0.5  # one probe, again bounded
    finally:
        server.resume()
    await asyncio.sleep(RETRY_INTERVAL)
    assert await state.get("k") == "v" and state.available


async def test_ping_probes_even_while_failing_fast(server: RedisServer, state: RedisState) -> None:
    server.stop()
    await _fails(state)
    server.start()
    assert await state.ping() is True  # no need to wait for the retry interval
    assert state.available and await state.incr("counter") == 1


def _caller(**limits: int | float) -> Caller:
    fields: dict[str, int | float] = {"rate_limit": 0, "daily_limit": 0, "monthly_quota": 0.0}
    fields.update(limits)
    return Caller(
        key_id=1,
        user_id=1,
        username="u",
        key_status="active",
        user_status="active",
        expires_at=None,
        allowed_platforms=None,
        allowed_models=None,
        rate_limit=int(fields["rate_limit"]),
        daily_limit=int(fields["daily_limit"]),
        monthly_quota=float(fields["monthly_quota"]),
        key_price_rate=1.0,
        user_price_rate=1.0,
        user_max_concurrency=int(limits.get("user_max_concurrency", 0)),
        account_group_id=None,
    )


async def test_limits_fail_closed_and_release_quietly(server: RedisServer, state: RedisState) -> None:
    """What the gateway does per limit when Redis is gone (no database access on these paths)."""
    db = Database("sqlite+aiosqlite:///:memory:")
    limits = Limits(state)
    admission = Admission(state, db, lambda: 60.0)
    price = ModelPrice("claude-sonnet-4-5", "claude-official", True, Prices(3.0, 15.0, 3.75, 0.3))
    request = Request(
        "claude-sonnet-4-5",
        frozenset({"claude-official"}),
        payload={"max_tokens": 100},
        body_size=400,
        price=price,
        rate=1.0,
    )

    async def admit(caller: Caller, holder: str) -> Ticket:
        return await admission.admit(caller, holder, request, require_package=False)

    async with db.engine.begin() as connection:  # the counters are seeded from an empty database
        await connection.run_sync(Base.metadata.create_all)
    try:
        assert await limits.take_account_slot("slots:account:1", "req-1", 2, 60.0) is True
        kept = await admit(_caller(daily_limit=3, monthly_quota=5.0), "req-1")
        server.stop()

        async with await admit(_caller(), "req-2"):
            pass  # nothing to check: admitted (and settled) without shared state
        for key_limit in (
            {"rate_limit": 5},
            {"daily_limit": 5},
            {"monthly_quota": 1.0},
            {"user_max_concurrency": 2},
        ):
            with pytest.raises(GatewayError) as refused:
                await admit(_caller(**key_limit), "req-2")
            assert refused.value.status == 503 and refused.value.message == STATE_UNAVAILABLE

        # An account whose cap cannot be checked is skipped; with none left the answer is a 503.
        assert await limits.take_account_slot("slots:account:1", "req-2", 2, 60.0) is False
        refusal = limits.no_free_account()
        assert refusal.status == 503 and refusal.message == STATE_UNAVAILABLE
        # Giving back, renewing and settling never raise: the leases expire by themselves.
        await limits.release_slot("slots:account:1", "req-1")
        await limits.renew("req-1", 60.0, slots=["slots:account:1", "slots:user:1"], budgets=kept.budgets)
        kept.bill(tokens=10, cost=0.5)
        async with kept:
            pass

        server.start()
        await asyncio.sleep(RETRY_INTERVAL)
        async with await admit(_caller(rate_limit=5), "req-3"):
            pass
        assert limits.no_free_account().status == 429  # state answers: all busy is a 429 again
    finally:
        await db.close()
