"""Fixtures running every shared-state test against both backends.

Redis comes from ``AIPROXY_TEST_REDIS_URL`` (default db 15 on localhost). When it is unreachable
the Redis half is skipped, unless ``AIPROXY_TEST_REQUIRE_SERVICES=1`` (CI), where a silent skip
would hide a broken backend, so it fails instead. Each test gets its own random namespace and
removes its keys afterwards, so runs can share a Redis database and never see each other's data.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from redis.asyncio import Redis

from aiproxy.store.state import MemoryState, RedisState, SharedState

REDIS_URL = os.environ.get("AIPROXY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
# These tests check the state's logic, not its deadline (test_unavailable.py does): a generous
# command timeout keeps a busy machine from failing them with a Redis "outage" that is only load.
LOGIC_TIMEOUT = 5.0

# Reachability is probed once per session: an unreachable host would otherwise cost a connect
# timeout in every single test.
_probe_result: dict[str, str | None] = {}


async def _redis_problem() -> str | None:
    if REDIS_URL not in _probe_result:
        probe = Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
        try:
            await probe.ping()
            _probe_result[REDIS_URL] = None
        except Exception as exc:  # any failure means "no usable Redis", whatever its cause
            _probe_result[REDIS_URL] = (
                f"Redis not reachable at {REDIS_URL}: {type(exc).__name__}: {exc} "
                "(start Redis or set AIPROXY_TEST_REDIS_URL)"
            )
        finally:
            await probe.aclose()
    return _probe_result[REDIS_URL]


async def require_redis() -> str:
    """Return the Redis URL, or skip (fail when services are required) if it cannot be reached."""
    problem = await _redis_problem()
    if problem is not None:
        if os.environ.get("AIPROXY_TEST_REQUIRE_SERVICES") == "1":
            pytest.fail(problem)
        pytest.skip(problem)
    return REDIS_URL


def new_prefix() -> str:
    return f"aiproxy-test:{uuid.uuid4().hex}:"


async def _cleanup(state: SharedState) -> None:
    leftovers = await state.scan("")
    if leftovers:
        await state.delete(*leftovers)
    await state.close()


@pytest.fixture(params=["memory", "redis"])
async def state(request: pytest.FixtureRequest) -> AsyncIterator[SharedState]:
    prefix = new_prefix()
    backend: SharedState
    if request.param == "memory":
        backend = MemoryState(prefix=prefix)
    else:
        backend = RedisState.from_url(await require_redis(), prefix=prefix, timeout=LOGIC_TIMEOUT)
    try:
        yield backend
    finally:
        await _cleanup(backend)


@pytest.fixture
async def redis_instances() -> AsyncIterator[Callable[[str], Awaitable[RedisState]]]:
    """Factory for independent RedisState instances (own pools), as separate app processes would
    have; everything created is cleaned up and closed after the test."""
    url = await require_redis()
    created: list[RedisState] = []

    async def make(prefix: str) -> RedisState:
        instance = RedisState.from_url(url, prefix=prefix, timeout=LOGIC_TIMEOUT)
        created.append(instance)
        return instance

    try:
        yield make
    finally:
        for instance in created:
            await _cleanup(instance)
