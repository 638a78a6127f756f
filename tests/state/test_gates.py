"""Gates (admit, seed, settle, renew_holds) behave the same on both backends."""

from __future__ import annotations

import asyncio

import pytest

from aiproxy.store.state import SharedState
from aiproxy.store.state.gates import Gate

DAY = 86400.0


def rate(key: str, limit: int, window: float = 60.0) -> Gate:
    return Gate("rate", key, limit, window)


def count(key: str, limit: int) -> Gate:
    return Gate("count", key, limit, DAY)


def budget(key: str, limit: float, amount: float) -> Gate:
    return Gate("budget", key, limit, DAY, amount)


def slot(key: str, limit: int, lease: float = 30.0) -> Gate:
    return Gate("slot", key, limit, lease)


async def test_gate_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        Gate("bucket", "k", 1, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Gate("rate", "k", 0, 1)
    with pytest.raises(ValueError):
        Gate("budget", "k", 5, 1, -1)


async def test_counters_and_budgets_are_seeded_before_anything_is_taken(state: SharedState) -> None:
    gates = [rate("r", 5), count("c", 3), budget("b", 100, 10)]
    verdict = await state.admit("h1", 30, gates)
    assert not verdict.admitted
    assert [g.key for g in verdict.unseeded] == ["c", "b"]
    assert await state.peek("r", 60) == 0  # nothing taken while unseeded
    await state.seed(gates[1], 2)
    await state.seed(gates[2], 40.5)
    await state.seed(gates[2], 0)  # only if absent: a second seeding changes nothing
    assert await state.budget("b") == (40.5, 0.0)
    verdict = await state.admit("h1", 30, gates)
    assert verdict.admitted and verdict.choice is None
    assert await state.peek("r", 60) == 1
    assert await state.get_int("c") == 3
    assert await state.budget("b") == (40.5, 10.0)
    assert 0 < (await state.ttl("c") or 0) <= DAY


async def test_all_or_nothing(state: SharedState) -> None:
    gates = [rate("r", 5), count("c", 1), slot("s", 1)]
    await state.seed(gates[1], 1)  # the day is used up already
    verdict = await state.admit("h1", 30, gates)
    assert not verdict.admitted and verdict.group is None and verdict.gate == 1
    assert await state.peek("r", 60) == 0 and await state.slot_count("s") == 0


async def test_rate_gate_reports_when_it_opens(state: SharedState) -> None:
    gates = [rate("r", 2, 5.0)]
    assert (await state.admit("a", 30, gates)).admitted
    assert (await state.admit("b", 30, gates)).admitted
    verdict = await state.admit("c", 30, gates)
    assert not verdict.admitted and verdict.gate == 0 and 4.0 < verdict.retry_after <= 5.0


async def test_budget_holds_at_most_what_is_left_and_settles_to_real_use(state: SharedState) -> None:
    gate = budget("b", 100, 60)
    await state.seed(gate, 0)
    assert (await state.admit("a", 30, [gate])).admitted
    assert (await state.admit("b", 30, [gate])).admitted  # 40 left: holds 40
    assert await state.budget("b") == (0.0, 100.0)
    refused = await state.admit("c", 30, [gate])
    assert not refused.admitted and refused.gate == 0
    await state.settle("a", budgets=[("b", 25)])  # used less than held: room again
    assert await state.budget("b") == (25.0, 40.0)
    assert (await state.admit("c", 30, [gate])).admitted  # holds the 35 left
    await state.settle("b", budgets=[("b", 0)])  # failed: all given back
    await state.settle("c", budgets=[("b", 90)])  # used more than held: billed anyway
    assert await state.budget("b") == (115.0, 0.0)
    assert not (await state.admit("d", 30, [gate])).admitted


async def test_budget_hold_of_a_lost_request_expires_with_its_lease(state: SharedState) -> None:
    gate = budget("b", 10, 10)
    await state.seed(gate, 0)
    assert (await state.admit("crashed", 0.2, [gate])).admitted
    assert not (await state.admit("next", 30, [gate])).admitted
    await asyncio.sleep(0.3)
    assert (await state.admit("next", 30, [gate])).admitted
    assert await state.budget("b") == (0.0, 10.0)


async def test_renewed_holds_outlive_their_first_lease(state: SharedState) -> None:
    gates = [budget("b", 10, 10), slot("s", 1, 0.3)]
    await state.seed(gates[0], 0)
    assert (await state.admit("long", 0.3, gates)).admitted
    await asyncio.sleep(0.2)
    await state.renew_holds("long", 1.0, slots=["s"], budgets=["b"])
    await asyncio.sleep(0.25)
    assert await state.budget("b") == (0.0, 10.0)
    assert await state.slot_holders("s") == ["long"]
    await state.settle("long", budgets=[("b", 3)], slots=["s"])
    assert await state.budget("b") == (3.0, 0.0) and await state.slot_count("s") == 0


async def test_settle_gives_counts_back_and_releases_slots(state: SharedState) -> None:
    gates = [count("c", 5), slot("s", 2)]
    await state.seed(gates[0], 0)
    assert (await state.admit("h", 30, gates)).admitted
    assert await state.get_int("c") == 1 and await state.slot_count("s") == 1
    await state.settle("h", counts=[("c", 1)], slots=["s"])
    assert await state.get_int("c") == 0 and await state.slot_count("s") == 0
    await state.settle("h", counts=[("gone", 1)], budgets=[("gone-too", 5)])  # missing keys: no-op
    assert await state.get("gone") is None and await state.budget("gone-too") is None


async def test_first_passing_choice_is_taken(state: SharedState) -> None:
    first = [budget("p1", 10, 5)]
    second = [count("p2:day", 10), budget("p2", 10, 5)]
    for gate in (*first, *second):
        await state.seed(gate, 10 if gate.key == "p1" else 0)  # p1 is used up
    verdict = await state.admit("h", 30, [rate("k", 10)], [first, second])
    assert verdict.admitted and verdict.choice == 1
    assert await state.get_int("p2:day") == 1 and await state.budget("p2") == (0.0, 5.0)
    assert await state.budget("p1") == (10.0, 0.0)


async def test_choices_spent_on_budgets_fall_back_unless_a_choice_is_required(state: SharedState) -> None:
    spent = [budget("p1", 10, 5)]
    await state.seed(spent[0], 10)
    verdict = await state.admit("h", 30, [], [spent])
    assert verdict.admitted and verdict.choice is None
    verdict = await state.admit("h2", 30, [], [spent], must_choose=True)
    assert not verdict.admitted and verdict.group == 0 and verdict.gate == 0


async def test_a_choice_refusing_for_another_reason_refuses(state: SharedState) -> None:
    spent = [budget("p1", 10, 5)]
    busy = [rate("p2:rate", 1), budget("p2", 10, 5)]
    for gate in (spent[0], busy[1]):
        await state.seed(gate, 10 if gate.key == "p1" else 0)
    assert (await state.admit("a", 30, [], [busy])).admitted
    verdict = await state.admit("b", 30, [slot("u", 5)], [spent, busy])
    assert not verdict.admitted and verdict.group == 1 and verdict.gate == 0 and verdict.retry_after > 0
    assert await state.slot_count("u") == 0  # the required slot was not taken either


async def test_concurrent_admissions_never_overfill_a_budget(state: SharedState) -> None:
    gate = budget("b", 1000, 30)
    await state.seed(gate, 0)
    verdicts = await asyncio.gather(*(state.admit(f"h{i}", 30, [gate]) for i in range(60)))
    admitted = [i for i, v in enumerate(verdicts) if v.admitted]
    assert len(admitted) == 34  # 33 full holds of 30 and one of the last 10
    used, held = await state.budget("b") or (0, 0)
    assert used == 0 and held == pytest.approx(1000)
