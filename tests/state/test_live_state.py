"""Sticky bindings and slots as the admin's cache routes read and remove them, on both backends."""

from __future__ import annotations

import asyncio
import time

import pytest

from aiproxy import state_keys
from aiproxy.gateway.live_state import LiveState, parse_session_id
from aiproxy.gateway.scheduler import StickySessions, parse_binding, session_digest, sticky_key
from aiproxy.store.state import SharedState

TTL = 60.0


async def test_a_binding_keeps_its_account_and_time_and_touch_keeps_the_time(state: SharedState) -> None:
    sticky = StickySessions(state)
    before = int(time.time())
    await sticky.bind(7, "conversation-1", 3, TTL)
    raw = await state.get(sticky_key(7, session_digest("conversation-1")))
    assert raw is not None
    account, bound_at = parse_binding(raw)
    assert account == 3 and bound_at is not None and before <= bound_at <= time.time()
    assert await sticky.get(7, "conversation-1") == 3
    await sticky.touch(7, "conversation-1", TTL * 2)
    assert await state.get(sticky_key(7, session_digest("conversation-1"))) == raw
    assert await sticky.get(8, "conversation-1") is None  # scoped by API key


async def test_bindings_written_before_the_time_was_kept_still_read(state: SharedState) -> None:
    digest = session_digest("old-session")
    await state.set(sticky_key(4, digest), "9", ttl=TTL)  # a bare account id
    assert await StickySessions(state).get(4, "old-session") == 9
    (binding,) = await LiveState(state).bindings()
    assert (binding.account_id, binding.bound_at, binding.age(time.time())) == (9, None, None)
    await state.set(sticky_key(4, digest), "not-a-binding", ttl=TTL)
    assert await StickySessions(state).get(4, "old-session") is None
    assert await LiveState(state).bindings() == []


async def test_list_filter_and_drop_bindings(state: SharedState) -> None:
    sticky, live = StickySessions(state), LiveState(state)
    await sticky.bind(1, "conversation-a", 10, TTL)
    await sticky.bind(1, "conversation-b", 11, TTL)
    await sticky.bind(2, "conversation-c", 10, TTL)
    await state.set("stickyish", "x")  # not a binding, whatever its name starts with
    found = await live.bindings()
    assert not any("conversation" in b.session_id for b in found)
    assert sorted((b.key_id, b.account_id) for b in found) == [(1, 10), (1, 11), (2, 10)]
    for binding in found:
        assert parse_session_id(binding.session_id) == (binding.key_id, binding.digest)
        assert binding.ttl is not None and 0 < binding.ttl <= TTL
    assert {b.session_id for b in found} == {
        f"1.{session_digest('conversation-a')}",
        f"1.{session_digest('conversation-b')}",
        f"2.{session_digest('conversation-c')}",
    }
    assert {b.key_id for b in await live.bindings(account_id=10)} == {1, 2}
    assert {b.account_id for b in await live.bindings(key_ids={1})} == {10, 11}
    assert await live.bindings(key_ids=set()) == []

    assert await live.drop_bindings(account_id=10) == 2
    assert [b.account_id for b in await live.bindings()] == [11]
    assert not await live.drop_session("1.nothex")
    assert not await live.drop_session(f"1.{session_digest('nobody')}")
    assert await live.drop_session(f"1.{session_digest('conversation-b')}")
    assert await live.count_bindings() == 0
    await sticky.bind(5, "d", 1, TTL)
    await sticky.bind(6, "e", 1, TTL)
    assert await live.drop_bindings(key_ids={5}) == 1
    assert await live.drop_bindings() == 1
    assert await state.get("stickyish") == "x"


@pytest.mark.parametrize("prefix", [state_keys.USER_SLOTS, state_keys.ACCOUNT_SLOTS])
async def test_slots_in_use_and_reset(state: SharedState, prefix: str) -> None:
    live = LiveState(state)
    await state.acquire_slot(f"{prefix}1", "r1", 5, 30.0)
    await state.acquire_slot(f"{prefix}1", "r2", 5, 30.0)
    await state.acquire_slot(f"{prefix}2", "r3", 5, 30.0)
    await state.acquire_slot(f"{prefix}3", "r4", 5, 0.05)
    await asyncio.sleep(0.1)  # the third owner's lease has run out
    assert await live.slots_in_use(prefix) == {1: 2, 2: 1}
    reset = await live.reset_all_slots(prefix)
    assert (reset.owners, reset.released) == (2, 3)
    assert await live.slots_in_use(prefix) == {}
