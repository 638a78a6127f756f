"""The multiplexed Redis connection: order, pipelining, errors kept apart, reconnects, scripts.

Against the real Redis of `AIPROXY_TEST_REDIS_URL` (skipped without it, failed in CI), each test in
keys of its own.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.asyncio.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from aiproxy.store.state.multiplex import Address, Multiplexer, Script

from .conftest import require_redis

_BUMP = Script("return redis.call('INCRBY', KEYS[1], ARGV[1])")


@pytest.fixture
async def url() -> str:
    return await require_redis()


@pytest.fixture
async def mux(url: str) -> AsyncIterator[Multiplexer]:
    multiplexer = Multiplexer(Address.of_pool(parse_url(url), tls=False), timeout=5.0, scripts=[_BUMP])
    try:
        yield multiplexer
    finally:
        multiplexer.close()


@pytest.fixture
async def plain(url: str) -> AsyncIterator[Redis]:
    """A separate ordinary client on the same database, to look at what the multiplexer did."""
    client = Redis.from_url(url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def key() -> str:
    return f"aiproxy-test:mux:{uuid.uuid4().hex}"


async def test_concurrent_calls_get_their_own_replies_in_order(mux: Multiplexer, key: str) -> None:
    replies = await asyncio.gather(*(mux.call("INCR", key) for _ in range(300)))
    assert replies == list(range(1, 301))  # issued in this order, run in this order
    assert await mux.call_many([("GET", key), ("DEL", key), ("GET", key)]) == ["300", 1, None]


async def test_a_command_sent_without_waiting_runs_before_later_ones(
    mux: Multiplexer, plain: Redis, key: str
) -> None:
    errors: list[BaseException] = []
    await mux.call("ZADD", key, 1, "holder")
    await mux.send(errors.append, "ZREM", key, "holder")
    assert await mux.call("ZSCORE", key, "holder") is None  # the release went first
    assert errors == [] and await plain.exists(key) == 0


async def test_an_error_answer_goes_to_its_own_caller_only(mux: Multiplexer, plain: Redis, key: str) -> None:
    await plain.set(key, "text")
    errors: list[BaseException] = []
    await mux.send(errors.append, "ZREM", key, "holder")  # wrong type: Redis answers an error
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await mux.call("LPUSH", key, "x")
    assert await mux.call("GET", key) == "text"  # the replies after the errors still line up
    assert len(errors) == 1 and "WRONGTYPE" in str(errors[0])
    await plain.delete(key)


async def test_the_database_of_the_url_is_used(url: str, plain: Redis, key: str) -> None:
    address = Address.of_pool(parse_url(url), tls=False)
    assert address.db == (parse_url(url).get("db") or 0)
    mux = Multiplexer(address, timeout=5.0)
    try:
        await mux.call("SET", key, "here")
        assert await plain.get(key) == "here"  # the plain client reads the URL's database too
    finally:
        mux.close()
        await plain.delete(key)


async def test_scripts_survive_a_flush(mux: Multiplexer, plain: Redis, key: str) -> None:
    assert await mux.evalsha(_BUMP, [key], [2]) == 2  # loaded when the connection opened
    await plain.script_flush()
    assert await mux.evalsha(_BUMP, [key], [3]) == 5  # NOSCRIPT: sent again with its body
    await plain.script_flush()
    errors: list[BaseException] = []
    await mux.send_script(errors.append, _BUMP, [key], [4])
    for _ in range(50):  # the retry as EVAL runs after the reply to the first attempt
        if await mux.call("GET", key) == "9":
            break
        await asyncio.sleep(0.01)
    assert await mux.call("GET", key) == "9" and errors == []
    await plain.delete(key)


async def test_a_dropped_connection_fails_what_was_waiting_and_is_replaced(
    mux: Multiplexer, plain: Redis, key: str
) -> None:
    await mux.call("SET", key, "1")
    assert await plain.client_kill_filter(_id=await mux.call("CLIENT", "ID")) == 1
    await asyncio.sleep(0.05)  # the close reaches the multiplexer as its connection_lost
    assert await mux.call("GET", key) == "1"  # a new connection, without an error for the caller
    # A command in flight when the connection goes fails with a connection error (it may have run).
    connection = await mux.call("CLIENT", "ID")
    waiting = asyncio.ensure_future(mux.call("BLPOP", key + ":list", 5))
    await asyncio.sleep(0.05)
    assert await plain.client_kill_filter(_id=connection) == 1
    with pytest.raises(RedisConnectionError):
        await waiting
    assert await mux.call("GET", key) == "1"
    await plain.delete(key)


async def test_a_caller_that_gives_up_does_not_shift_the_replies(mux: Multiplexer, key: str) -> None:
    await mux.call("SET", key, "a")
    slow = asyncio.ensure_future(mux.call("BLPOP", key + ":list", 0.2))
    await asyncio.sleep(0.01)
    slow.cancel()
    assert await mux.call("GET", key) == "a"  # not the BLPOP's late nil
    await mux.call("DEL", key)
