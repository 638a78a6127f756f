"""The shared state (in-process memory or Redis) as the monitor's `cache` view shows it.

One walk over the relay's key namespace gives everything: sticky bindings, the users' and
accounts' slot keys and a count of keys per family (`sticky`, `slots:user`, `budget:key`, …).
Live leases are then read for the slot keys (one exists only while someone holds a slot), in
batches of `SLOT_READS` per round trip.

The walk is O(keys): on Redis a SCAN in steps of `SCAN_STEP` (each step a short command, so
Redis never blocks) that looks at every key of the Redis database and returns the relay's. Most
of its time is Redis's; on this side each key is only grouped, in C (see `_Walk`). On this
machine the whole view takes ~40 ms with 20,000 sticky sessions, and grows with them. It stops
after `WALK_BUDGET` seconds and then says `complete: false`. The walk does not go through
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
from dataclasses import dataclass, field
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
SLOTS_PREFIX = "slots:"  # state_keys.USER_SLOTS and ACCOUNT_SLOTS both start with it
STICKY_FAMILY = STICKY_PREFIX.rstrip(":")
OTHER = "other"


def _words(group: str) -> str:
    head, sep, rest = group.partition(":")
    if not sep:
        return head
    second = rest.partition(":")[0]
    return f"{head}:{second}" if second.replace("_", "").replace("-", "").isalpha() else head


def key_family(key: str) -> str:
    """The leading words of a key before its last part, without the ids and digests among them:
    `sticky:12:ab…` → `sticky`, `slots:user:7` → `slots:user`, `budget:key:3:month:11` →
    `budget:key`, `pool:version` → `pool`; a key without `:` → `other`."""
    group, sep, _ = key.rpartition(":")
    return _words(group) if sep else OTHER


@dataclass(slots=True)
class _Walk:
    """What one walk over the namespace found, tallied batch by batch.

    Per key only C-level work: keys are grouped by everything before their last `:` (a few
    hundred groups: one per API key for the bindings), and families are named per group."""

    strip: int  # length of the namespace prefix on the keys walked
    groups: Counter[str] = field(default_factory=Counter)
    slot_keys: list[str] = field(default_factory=list)
    total: int = 0
    complete: bool = True

    def add(self, keys: list[str], slots_prefix: str) -> None:
        self.total += len(keys)
        self.groups.update(key.rsplit(":", 1)[0] for key in keys)
        self.slot_keys += [key[self.strip :] for key in keys if key.startswith(slots_prefix)]

    def families(self) -> Counter[str]:
        """Keys per `key_family`, named once per group."""
        families: Counter[str] = Counter()
        for group, n in self.groups.items():
            # A group shorter than the namespace is a key with no `:` of its own.
            families[_words(group[self.strip :]) if len(group) >= self.strip else OTHER] += n
        return families


async def _walk_redis(state: RedisState) -> _Walk:
    """The relay's keys; the walk stops after `WALK_BUDGET` (`complete: false`): a huge keyspace
    gives a partial count rather than a view that never answers."""
    client, prefix = state.client, state.prefix
    pattern = _GLOB.sub(r"\\\1", prefix) + "*"  # the prefix matched literally
    walk = _Walk(strip=len(prefix))
    slots_prefix = prefix + SLOTS_PREFIX
    deadline = time.monotonic() + WALK_BUDGET
    cursor: int | str = 0
    while True:
        cursor, found = await client.scan(cursor=cursor, match=pattern, count=SCAN_STEP)
        walk.add(found, slots_prefix)
        if not int(cursor):
            return walk
        if time.monotonic() > deadline:
            walk.complete = False
            return walk


async def _walk(state: SharedState) -> _Walk:
    if isinstance(state, RedisState):
        return await _walk_redis(state)
    # In process, keys carry no namespace: a one-character one makes them read like Redis's.
    walk = _Walk(strip=1)
    walk.add([":" + key for key in await state.scan("")], ":" + SLOTS_PREFIX)
    return walk


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
    walk = await _walk(state)
    walked_ms = round((time.perf_counter() - started) * 1000, 2)
    user_keys = _owners(walk.slot_keys, state_keys.USER_SLOTS)
    account_keys = _owners(walk.slot_keys, state_keys.ACCOUNT_SLOTS)
    leases = await _live_leases(state, user_keys + account_keys)
    user_leases, account_leases = leases[: len(user_keys)], leases[len(user_keys) :]
    families = walk.families()
    return {
        "session_count": families.get(STICKY_FAMILY, 0),
        "account_concurrency_count": sum(1 for n in account_leases if n),
        "user_concurrency_count": sum(1 for n in user_leases if n),
        "account_slots_in_use": sum(account_leases),
        "user_slots_in_use": sum(user_leases),
        "keys": {
            "total": walk.total,
            "by_family": dict(families.most_common()),
            "complete": walk.complete,
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
