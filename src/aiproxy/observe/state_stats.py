"""The shared state (in-process memory or Redis) as the monitor's `cache` view shows it.

One walk over the relay's key namespace gives everything: sticky bindings, the users' and
accounts' slot keys and a count of keys per family (`sticky`, `slots:user`, `budget:key`, …).
Live leases are then read for the slot keys (one exists only while someone holds a slot), in
batches of `SLOT_READS` per round trip.

The walk is O(keys): on Redis a SCAN in steps of `SCAN_STEP` (each step a short command, so
Redis never blocks) that looks at every key of the Redis database and returns the relay's: on
this machine the whole view takes ~40 ms with 20,000 sticky sessions, and grows with them. It
stops after `WALK_BUDGET` seconds and then says `complete: false`. The walk does not go through
`RedisState.scan`: a slow walk must not trip the state's circuit breaker, which would make the
gateway serve without shared state for a while. When Redis does not answer (`TIMEOUT`) the view
says `reachable: false` with the reason, instead of failing.

The accounts view needs only the accounts' slots: it reads them by the accounts' ids, no walk.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import Counter
from typing import Any

from .. import state_keys
from ..gateway.scheduler import STICKY_PREFIX
from ..store.state import RedisState, SharedState

log = logging.getLogger(__name__)

SCAN_STEP = 5000  # keys Redis looks at per SCAN call
WALK_BUDGET = 2.0  # seconds of walking before the counts are given as they are (`complete: false`)
TIMEOUT = 5.0  # seconds for the whole view
SLOT_READS = 500  # slot keys read per round trip
_GLOB = re.compile(r"([*?\[\]\\])")


def key_family(key: str) -> str:
    """`sticky:12:ab…` → `sticky`, `slots:user:7` → `slots:user`, `pool:version` → `pool:version`:
    the leading words of a key, without the ids and digests that follow them."""
    head, sep, rest = key.partition(":")
    if not sep:
        return head
    second = rest.partition(":")[0]
    return f"{head}:{second}" if second.replace("_", "").replace("-", "").isalpha() else head


async def _redis_keys(state: RedisState) -> tuple[list[str], bool]:
    """The relay's keys (without the namespace), and whether the walk finished within
    `WALK_BUDGET`: a huge keyspace gives a partial count rather than a view that never answers."""
    client, prefix = state.client, state.prefix
    pattern = _GLOB.sub(r"\\\1", prefix) + "*"  # the prefix matched literally
    strip = len(prefix)
    deadline = time.monotonic() + WALK_BUDGET
    keys: list[str] = []
    cursor: int | str = 0
    while True:
        cursor, found = await client.scan(cursor=cursor, match=pattern, count=SCAN_STEP)
        keys.extend(key[strip:] for key in found)
        if not int(cursor):
            return keys, True
        if time.monotonic() > deadline:
            return keys, False


async def _keys(state: SharedState) -> tuple[list[str], bool]:
    if isinstance(state, RedisState):
        return await _redis_keys(state)
    return await state.scan(""), True


async def _live_leases(state: SharedState, keys: list[str]) -> list[int]:
    """Live leases per slot key, a batch per round trip."""
    counts: list[int] = []
    for start in range(0, len(keys), SLOT_READS):
        counts += await state.slot_counts(keys[start : start + SLOT_READS])
    return counts


def _owners(keys: list[str], prefix: str) -> list[str]:
    return [k for k in keys if k.startswith(prefix) and k[len(prefix) :].isdigit()]


async def _redis_info(state: RedisState) -> dict[str, Any]:
    info = await state.client.info()
    db = int(state.client.connection_pool.connection_kwargs.get("db", 0) or 0)
    return {
        "version": info.get("redis_version", ""),
        "db": db,
        "prefix": state.prefix,
        "db_keys": int((info.get(f"db{db}") or {}).get("keys", 0)),
        "used_memory": int(info.get("used_memory", 0)),
        "used_memory_human": info.get("used_memory_human", ""),
        "used_memory_peak": int(info.get("used_memory_peak", 0)),
        "maxmemory": int(info.get("maxmemory", 0)),
        "maxmemory_policy": info.get("maxmemory_policy", ""),
        "connected_clients": int(info.get("connected_clients", 0)),
        "uptime_seconds": int(info.get("uptime_in_seconds", 0)),
    }


async def _collect(state: SharedState) -> dict[str, Any]:
    started = time.perf_counter()
    keys, complete = await _keys(state)
    walked_ms = round((time.perf_counter() - started) * 1000, 2)
    user_keys = _owners(keys, state_keys.USER_SLOTS)
    account_keys = _owners(keys, state_keys.ACCOUNT_SLOTS)
    leases = await _live_leases(state, user_keys + account_keys)
    user_leases, account_leases = leases[: len(user_keys)], leases[len(user_keys) :]
    families = Counter(map(key_family, keys))
    return {
        "session_count": sum(1 for k in keys if k.startswith(STICKY_PREFIX)),
        "account_concurrency_count": sum(1 for n in account_leases if n),
        "user_concurrency_count": sum(1 for n in user_leases if n),
        "account_slots_in_use": sum(account_leases),
        "user_slots_in_use": sum(user_leases),
        "keys": {
            "total": len(keys),
            "by_family": dict(families.most_common()),
            "complete": complete,
            "walk_ms": walked_ms,
        },
        "redis": await _redis_info(state) if isinstance(state, RedisState) else None,
    }


async def state_stats(*, state: SharedState) -> dict[str, Any]:
    """Sessions, slots and keys in shared state; `reachable: false` when it does not answer."""
    try:
        async with asyncio.timeout(TIMEOUT):
            data = await _collect(state)
    except Exception as exc:  # Redis down, stalled or refusing: the view says so
        log.warning("monitor: shared state did not answer: %s: %s", type(exc).__name__, exc)
        return {"kind": state.kind, "reachable": False, "error": type(exc).__name__}
    return {"kind": state.kind, "reachable": True, **data}


async def account_slots(*, state: SharedState, account_ids: list[int]) -> tuple[int, int] | None:
    """(accounts holding slots, their live leases), read by the accounts' slot keys (no walk);
    None when shared state does not answer."""
    keys = [state_keys.account_slots(account_id) for account_id in account_ids]
    try:
        async with asyncio.timeout(TIMEOUT):
            leases = await _live_leases(state, keys)
    except Exception as exc:  # as in state_stats
        log.warning("monitor: shared state did not answer: %s: %s", type(exc).__name__, exc)
        return None
    return sum(1 for n in leases if n), sum(leases)
