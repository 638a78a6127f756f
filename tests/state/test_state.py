"""One behavioural suite for every SharedState backend (the ``state`` fixture runs memory and Redis).

Expiry tests use real sleeps with short (0.2-0.4 s) durations and generous margins: the point is
that Redis honours sub-second ttls exactly like the in-process backend does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from aiproxy.store.state import (
    LockNotAcquired,
    MemoryState,
    RateDecision,
    RedisState,
    SharedState,
    open_state,
)

from .conftest import new_prefix, require_redis

# ------------------------------------------------------------------------------------------ basics


async def test_kind_and_ping(state: SharedState) -> None:
    assert state.kind in {"memory", "redis"}
    assert state.kind == ("memory" if isinstance(state, MemoryState) else "redis")
    assert await state.ping() is True


async def test_open_state_without_url_is_memory() -> None:
    memory = open_state(None, prefix="p:")
    assert isinstance(memory, MemoryState) and memory.kind == "memory" and memory.prefix == "p:"
    await memory.close()


async def test_open_state_with_url_is_redis() -> None:
    prefix = new_prefix()
    redis_state = open_state(await require_redis(), prefix=prefix)
    try:
        assert isinstance(redis_state, RedisState) and redis_state.kind == "redis"
        assert redis_state.prefix == prefix
        assert await redis_state.ping() is True
    finally:
        await redis_state.close()


async def test_rejects_non_positive_durations(state: SharedState) -> None:
    with pytest.raises(ValueError):
        await state.incr("c", ttl=0)
    with pytest.raises(ValueError):
        await state.set("k", "v", ttl=-1)
    with pytest.raises(ValueError):
        await state.hit("r", 5, 0)
    with pytest.raises(ValueError):
        await state.acquire_slot("s", "h", 1, 0)
    with pytest.raises(ValueError):
        await state.acquire_lock("l", 0)


# ---------------------------------------------------------------------------------------- counters


async def test_incr_and_get_int(state: SharedState) -> None:
    assert await state.get_int("c") == 0
    assert await state.incr("c") == 1
    assert await state.incr("c", 5) == 6
    assert await state.incr("c", -2) == 4
    assert await state.get_int("c") == 4
    assert await state.get("c") == "4"  # counters are ordinary string keys
    assert await state.ttl("c") is None


async def test_incr_ttl_is_a_fixed_window(state: SharedState) -> None:
    assert await state.incr("c", ttl=0.3) == 1
    await asyncio.sleep(0.15)
    assert await state.incr("c", ttl=0.3) == 2  # must not push the expiry out
    remaining = await state.ttl("c")
    assert remaining is not None and remaining <= 0.16
    await asyncio.sleep(0.25)
    assert await state.get_int("c") == 0
    assert await state.incr("c", ttl=0.3) == 1  # a new window starts with a fresh ttl
    remaining = await state.ttl("c")
    assert remaining is not None and 0.2 < remaining <= 0.3


async def test_incr_float(state: SharedState) -> None:
    assert await state.get_float("spend") == 0.0
    assert await state.incr_float("spend", 0.25, ttl=0.2) == pytest.approx(0.25)
    assert await state.incr_float("spend", 1.5) == pytest.approx(1.75)
    assert await state.get_float("spend") == pytest.approx(1.75)
    assert await state.get_int("spend") == 1  # tolerant read of a float counter
    await asyncio.sleep(0.3)
    assert await state.get_float("spend") == 0.0


# ----------------------------------------------------------------------------------- rate limiting


async def test_hit_refuses_at_limit_and_frees_after_window(state: SharedState) -> None:
    decisions = [await state.hit("r", 3, 0.3) for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, True]
    assert [d.count for d in decisions] == [1, 2, 3]
    refused = await state.hit("r", 3, 0.3)
    assert isinstance(refused, RateDecision)
    assert (refused.allowed, refused.count, refused.limit) == (False, 3, 3)
    assert 0 < refused.retry_after <= 0.3
    assert await state.peek("r", 0.3) == 3  # the refused hit was not recorded
    await asyncio.sleep(refused.retry_after + 0.05)
    assert await state.peek("r", 0.3) == 0
    again = await state.hit("r", 3, 0.3)
    assert again.allowed and again.count == 1 and again.retry_after == 0


async def test_hit_window_slides(state: SharedState) -> None:
    # One early hit, then two later ones: only the early one leaves the window first, which a
    # fixed-window counter would get wrong.
    assert (await state.hit("r", 3, 0.4)).allowed
    await asyncio.sleep(0.2)
    assert (await state.hit("r", 3, 0.4)).allowed
    assert (await state.hit("r", 3, 0.4)).allowed
    refused = await state.hit("r", 3, 0.4)
    assert not refused.allowed
    assert 0.1 < refused.retry_after <= 0.21  # waits only for the early hit
    await asyncio.sleep(refused.retry_after + 0.03)
    assert await state.peek("r", 0.4) == 2
    assert (await state.hit("r", 3, 0.4)).allowed
    assert not (await state.hit("r", 3, 0.4)).allowed


async def test_hit_unlimited_is_not_stored(state: SharedState) -> None:
    for _ in range(5):
        decision = await state.hit("r", 0, 1.0)
        assert decision.allowed and decision.count == 0 and decision.retry_after == 0
    assert await state.peek("r", 1.0) == 0
    assert await state.scan("r") == []


async def test_hit_is_atomic_under_concurrency(state: SharedState) -> None:
    decisions = await asyncio.gather(*(state.hit("burst", 10, 5.0) for _ in range(50)))
    assert sum(d.allowed for d in decisions) == 10
    assert sorted(d.count for d in decisions if d.allowed) == list(range(1, 11))
    assert await state.peek("burst", 5.0) == 10


# ------------------------------------------------------------------------------------------- slots


async def test_slots_limit_renew_and_release(state: SharedState) -> None:
    assert await state.acquire_slot("s", "a", 2, 5.0)
    assert await state.acquire_slot("s", "b", 2, 5.0)
    assert not await state.acquire_slot("s", "c", 2, 5.0)
    assert await state.acquire_slot("s", "a", 2, 5.0)  # same holder renews even at the limit
    assert await state.slot_count("s") == 2
    assert sorted(await state.slot_holders("s")) == ["a", "b"]
    await state.release_slot("s", "a")
    await state.release_slot("s", "a")  # idempotent
    await state.release_slot("missing", "a")
    assert await state.slot_count("s") == 1
    assert await state.acquire_slot("s", "c", 2, 5.0)
    assert sorted(await state.slot_holders("s")) == ["b", "c"]


async def test_slot_lease_expiry_frees_slot(state: SharedState) -> None:
    assert await state.acquire_slot("s", "crashed", 1, 0.2)
    assert not await state.acquire_slot("s", "b", 1, 5.0)
    assert await state.renew_slot("s", "crashed", 0.2)
    await asyncio.sleep(0.3)
    assert await state.slot_count("s") == 0
    assert await state.slot_holders("s") == []
    assert not await state.renew_slot("s", "crashed", 5.0)  # an expired lease cannot be revived
    assert await state.acquire_slot("s", "b", 1, 5.0)
    assert await state.renew_slot("s", "b", 5.0)


async def test_an_expired_lease_is_gone_without_a_read_in_between(state: SharedState) -> None:
    assert await state.acquire_slot("s", "crashed", 2, 0.2)
    assert await state.acquire_slot("s", "live", 2, 5.0)
    await asyncio.sleep(0.3)
    # No count or listing has pruned the set: the expired lease must still free its slot and stay dead.
    assert await state.acquire_slot("s", "new", 2, 5.0)
    assert not await state.renew_slot("s", "crashed", 5.0)
    assert not await state.acquire_slot("s", "third", 2, 5.0)
    await state.release_slot("s", "live")
    assert await state.acquire_slot("s", "third", 2, 5.0)
    assert sorted(await state.slot_holders("s")) == ["new", "third"]


async def test_memory_slots_cost_no_scan_until_the_set_looks_full() -> None:
    """Thousands of open streams of one user each take, renew and free a slot: none of that may
    walk the whole set (it did, three times per request)."""
    memory = MemoryState()
    scans = 0
    prune = memory._prune_slots

    def counting(key: str, now: float) -> dict[str, float] | None:
        nonlocal scans
        scans += 1
        return prune(key, now)

    memory._prune_slots = counting  # type: ignore[method-assign]
    for i in range(3000):
        assert await memory.acquire_slot("s", f"h{i}", 5000, 60.0)
    for i in range(0, 3000, 2):
        assert await memory.renew_slot("s", f"h{i}", 60.0)
        await memory.release_slot("s", f"h{i + 1}")
    assert scans == 0
    assert await memory.slot_count("s") == 1500 and scans == 1  # a read prunes
    await memory.close()


async def test_slot_holders_lists_live_leases_only(state: SharedState) -> None:
    assert await state.acquire_slot("s", "short", 5, 0.2)
    assert await state.acquire_slot("s", "long", 5, 5.0)
    assert await state.slot_holders("s") == ["short", "long"]  # soonest-expiring first
    await asyncio.sleep(0.3)
    assert await state.slot_holders("s") == ["long"]
    assert await state.slot_count("s") == 1


async def test_slot_counts_reads_many_keys_at_once(state: SharedState) -> None:
    assert await state.slot_counts([]) == []
    for holder in ("a", "b"):
        assert await state.acquire_slot("s1", holder, 0, 5.0)
    assert await state.acquire_slot("s2", "short", 0, 0.2)
    assert await state.slot_counts(["s1", "s2", "missing"]) == [2, 1, 0]
    await asyncio.sleep(0.3)
    assert await state.slot_counts(["s2", "s1"]) == [0, 2]  # live leases only, in the order asked


async def test_slot_unlimited_still_tracked(state: SharedState) -> None:
    for i in range(5):
        assert await state.acquire_slot("s", f"h{i}", 0, 5.0)
    assert await state.slot_count("s") == 5


async def test_reset_slots(state: SharedState) -> None:
    for holder in ("a", "b", "c"):
        assert await state.acquire_slot("s", holder, 10, 5.0)
    assert await state.reset_slots("s") == 3
    assert await state.slot_count("s") == 0
    assert await state.reset_slots("s") == 0
    assert await state.acquire_slot("s", "d", 1, 5.0)


async def test_slots_are_atomic_under_concurrency(state: SharedState) -> None:
    results = await asyncio.gather(*(state.acquire_slot("s", f"h{i}", 7, 5.0) for i in range(100)))
    assert sum(results) == 7
    assert await state.slot_count("s") == 7
    winners = sorted(f"h{i}" for i, ok in enumerate(results) if ok)
    assert sorted(await state.slot_holders("s")) == winners


# --------------------------------------------------------------------------------------- key/value


async def test_set_get_only_if_absent(state: SharedState) -> None:
    assert await state.get("k") is None
    assert await state.set("k", "one")
    assert not await state.set("k", "two", only_if_absent=True)
    assert await state.get("k") == "one"
    assert await state.set("k", "three")
    assert await state.get("k") == "three"
    assert await state.set("fresh", "x", 5.0, only_if_absent=True)


async def test_ttl_and_expire(state: SharedState) -> None:
    assert await state.set("k", "v", ttl=0.2)
    remaining = await state.ttl("k")
    assert remaining is not None and 0 < remaining <= 0.2
    await asyncio.sleep(0.3)
    assert await state.get("k") is None
    assert await state.ttl("k") is None
    assert await state.set("k", "v")
    assert await state.ttl("k") is None  # exists but has no ttl
    assert await state.expire("k", 0.2)
    assert not await state.expire("missing", 1.0)
    await asyncio.sleep(0.3)
    assert await state.get("k") is None
    assert await state.set("k", "v", ttl=5.0)
    assert await state.set("k", "w")  # a plain set clears the old ttl, as in Redis
    assert await state.ttl("k") is None


async def test_get_with_ttl_reads_many_keys_at_once(state: SharedState) -> None:
    assert await state.get_with_ttl([]) == []
    await state.set("a", "1", ttl=5.0)
    await state.set("b", "2")
    await state.set("gone", "x", ttl=0.1)
    await asyncio.sleep(0.2)
    (a, a_ttl), b, gone, missing = await state.get_with_ttl(["a", "b", "gone", "missing"])
    assert a == "1" and a_ttl is not None and 4.0 < a_ttl <= 5.0
    assert b == ("2", None)  # exists without a ttl
    assert gone == missing == (None, None)


async def test_pop_is_single_use(state: SharedState) -> None:
    assert await state.set("captcha:1", "ABCD", ttl=5.0)
    results = await asyncio.gather(*(state.pop("captcha:1") for _ in range(20)))
    assert [r for r in results if r is not None] == ["ABCD"]
    assert await state.get("captcha:1") is None
    assert await state.pop("captcha:1") is None


async def test_delete_counts_existing_keys(state: SharedState) -> None:
    await state.set("a", "1")
    await state.incr("b")
    await state.hit("rate", 5, 5.0)
    await state.acquire_slot("slots", "h", 1, 5.0)
    assert await state.delete("a", "b", "rate", "slots", "missing") == 4
    assert await state.delete() == 0
    assert await state.scan("") == []


async def test_scan_returns_unnamespaced_keys(state: SharedState) -> None:
    for key in ("cap:1", "cap:2", "capx", "other"):
        await state.set(key, "v")
    await state.set("cap:gone", "v", ttl=0.1)
    await state.set("ca*", "literal")
    await asyncio.sleep(0.2)
    assert await state.scan("cap:") == ["cap:1", "cap:2"]
    assert await state.scan("ca*") == ["ca*"]  # glob characters are matched literally
    assert await state.scan("") == ["ca*", "cap:1", "cap:2", "capx", "other"]
    assert await state.scan("nope") == []


# ------------------------------------------------------------------------------------------- locks


async def test_lock_is_exclusive_and_owner_only(state: SharedState) -> None:
    token = await state.acquire_lock("l", 5.0)
    assert token
    assert await state.acquire_lock("l", 5.0) is None
    assert not await state.release_lock("l", "not-the-token")
    assert await state.acquire_lock("l", 5.0) is None  # still held
    assert await state.release_lock("l", token)
    assert not await state.release_lock("l", token)  # already released
    second = await state.acquire_lock("l", 5.0)
    assert second and second != token


async def test_lock_expires_and_old_owner_cannot_release(state: SharedState) -> None:
    stale = await state.acquire_lock("l", 0.2)
    assert stale
    await asyncio.sleep(0.3)
    fresh = await state.acquire_lock("l", 5.0)
    assert fresh
    assert not await state.release_lock("l", stale)  # must not free the new owner's lock
    assert await state.get("l") == fresh


async def test_lock_context_manager(state: SharedState) -> None:
    async with state.lock("l", 5.0) as token:
        assert await state.get("l") == token
        with pytest.raises(LockNotAcquired):
            async with state.lock("l", 5.0):
                pass
    assert await state.get("l") is None  # released on exit
    with pytest.raises(RuntimeError, match="boom"):
        async with state.lock("l", 5.0):
            raise RuntimeError("boom")
    assert await state.get("l") is None  # released on error too


async def test_lock_context_manager_waits_for_release(state: SharedState) -> None:
    token = await state.acquire_lock("l", 5.0)
    assert token

    async def release_soon() -> None:
        await asyncio.sleep(0.15)
        await state.release_lock("l", token)

    releaser = asyncio.create_task(release_soon())
    started = time.monotonic()
    async with state.lock("l", 5.0, wait=2.0) as mine:
        assert mine != token
        assert 0.1 <= time.monotonic() - started < 1.5
    await releaser


async def test_lock_context_manager_times_out(state: SharedState) -> None:
    assert await state.acquire_lock("l", 5.0)
    started = time.monotonic()
    with pytest.raises(LockNotAcquired):
        async with state.lock("l", 5.0, wait=0.2):
            pytest.fail("must not enter while someone else holds the lock")
    assert 0.2 <= time.monotonic() - started < 1.0


async def test_lock_context_manager_gets_expired_lock(state: SharedState) -> None:
    assert await state.acquire_lock("l", 0.2)  # owner "crashes" and never releases
    async with state.lock("l", 5.0, wait=1.0) as token:
        assert await state.get("l") == token


# ------------------------------------------------------------------------------- backend specifics


async def test_memory_sweep_bounds_growth() -> None:
    """Keys nobody reads again must still be freed; a fake clock makes this deterministic."""
    now = [1000.0]
    state = MemoryState(clock=lambda: now[0], sweep_interval=5.0)
    for i in range(1000):
        await state.set(f"k{i}", "v", ttl=1.0)
        await state.hit(f"r{i}", 5, 1.0)
        await state.acquire_slot(f"s{i}", "h", 1, 1.0)
    await state.set("keep", "v")
    now[0] += 10
    await state.incr("trigger")  # any write after the interval sweeps
    assert sorted(state._data) == ["keep", "trigger"]
    assert list(state._expires) == []


async def test_redis_instances_agree(
    redis_instances: Callable[[str], Awaitable[RedisState]],
) -> None:
    """Two instances with separate connection pools (as two app processes) share one limit."""
    prefix = new_prefix()
    first, second = await redis_instances(prefix), await redis_instances(prefix)

    # Concurrency slots: limit 3 across both.
    assert await first.acquire_slot("s", "a", 3, 5.0)
    assert await first.acquire_slot("s", "b", 3, 5.0)
    assert await second.acquire_slot("s", "c", 3, 5.0)
    assert not await second.acquire_slot("s", "d", 3, 5.0)
    assert not await first.acquire_slot("s", "d", 3, 5.0)
    assert await first.slot_count("s") == 3
    # A release from any instance frees the slot for all. It is sent without waiting for an answer, so
    # another instance sees it once it has landed: a round trip on the releasing instance's own
    # connection is ordered after it.
    await second.release_slot("s", "a")
    assert await second.slot_count("s") == 2
    assert await first.acquire_slot("s", "d", 3, 5.0)
    results = await asyncio.gather(
        *(
            inst.acquire_slot("race", f"{n}-h{i}", 7, 5.0)
            for i in range(60)
            for n, inst in enumerate((first, second))
        )
    )
    assert sum(results) == 7

    # Sliding-window rate limit: 10 per window across both, hammered concurrently from each.
    decisions = await asyncio.gather(
        *(inst.hit("rate", 10, 5.0) for _ in range(30) for inst in (first, second))
    )
    assert sum(d.allowed for d in decisions) == 10
    assert await first.peek("rate", 5.0) == await second.peek("rate", 5.0) == 10

    # Single-use values and locks are shared too.
    assert await first.set("captcha", "XYZ", 5.0)
    assert await second.pop("captcha") == "XYZ"
    assert await first.pop("captcha") is None
    token = await first.acquire_lock("l", 5.0)
    assert token and await second.acquire_lock("l", 5.0) is None
    assert not await second.release_lock("l", "guess")
    assert await second.release_lock("l", token)
