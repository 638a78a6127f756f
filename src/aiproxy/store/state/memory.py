"""In-process backend for single-instance deployments and tests.

Every method runs to completion without awaiting, so on one event loop each operation is atomic
for free: no locks are needed. The data model mirrors the Redis backend (one keyspace; strings,
rate logs and slot sets) so behaviour, including key ttls, is the same whichever backend runs.
"""

from __future__ import annotations

import math
import secrets
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from .base import RateDecision, SharedState, parse_int, require_positive
from .gates import ADMITTED, Gate, Verdict, pick

__all__ = ["MemoryState"]


@dataclass(slots=True)
class _Budget:
    """A budget gate's value: what was used, what is held, and each holder's (hold, lease expiry)."""

    used: float
    held: float = 0.0
    holds: dict[str, tuple[float, float]] = field(default_factory=dict)

    def prune(self, now: float) -> None:
        for holder in [h for h, (_, expires) in self.holds.items() if expires <= now]:
            self.held = max(0.0, self.held - self.holds.pop(holder)[0])


#: A rate log is a deque of hit timestamps (oldest first); a slot set maps holder -> lease expiry.
_Value = str | deque[float] | dict[str, float] | _Budget
_T = TypeVar("_T", str, deque, dict, _Budget)


def _format_float(value: float) -> str:
    """Render like Redis INCRBYFLOAT does ("3", "0.5"), so ``get`` returns the same text on both."""
    if value.is_integer() and abs(value) < 1e17:
        return str(int(value))
    return repr(value)


class MemoryState(SharedState):
    """Dict-based :class:`SharedState`. Not shared between processes: use Redis for that."""

    kind = "memory"

    def __init__(
        self,
        *,
        prefix: str = "aiproxy:",
        clock: Callable[[], float] = time.time,
        sweep_interval: float = 5.0,
    ) -> None:
        # The prefix is accepted for interface parity only: nothing else shares this dict.
        self.prefix = prefix
        self._clock = clock
        self._data: dict[str, _Value] = {}
        self._expires: dict[str, float] = {}  # only keys that have a ttl
        self._sweep_interval = sweep_interval
        self._next_sweep = clock() + sweep_interval

    # ---------------------------------------------------------------- internals
    def _drop(self, key: str) -> None:
        self._data.pop(key, None)
        self._expires.pop(key, None)

    def _live(self, key: str, now: float | None = None) -> _Value | None:
        """The value if present and unexpired; expired keys are removed lazily right here."""
        expires = self._expires.get(key)
        if expires is not None and expires <= (self._clock() if now is None else now):
            self._drop(key)
            return None
        return self._data.get(key)

    def _typed(self, key: str, kind: type[_T], now: float | None = None) -> _T | None:
        value = self._live(key, now)
        if value is None or isinstance(value, kind):
            return value
        raise TypeError(f"WRONGTYPE: key {key!r} holds a {type(value).__name__}, not a {kind.__name__}")

    def _wrote(self) -> None:
        """Called after writes. Lazy expiry alone never frees keys nobody reads again, so every
        ``sweep_interval`` seconds do one O(n) pass; amortised over all writes that stays cheap."""
        now = self._clock()
        if now < self._next_sweep:
            return
        self._next_sweep = now + self._sweep_interval
        for key in [k for k, exp in self._expires.items() if exp <= now]:
            self._drop(key)

    def _store(self, key: str, value: _Value, expires_at: float | None) -> None:
        self._data[key] = value
        if expires_at is None:
            self._expires.pop(key, None)
        else:
            self._expires[key] = expires_at
        self._wrote()

    def _prune_slots(self, key: str, now: float) -> dict[str, float] | None:
        slots = self._typed(key, dict, now)
        if slots is None:
            return None
        for holder in [h for h, exp in slots.items() if exp <= now]:
            del slots[holder]
        if not slots:  # Redis deletes empty sorted sets; do the same
            self._drop(key)
            return None
        return slots

    def _prune_log(self, key: str, window: float, now: float) -> deque[float] | None:
        log = self._typed(key, deque, now)
        if log is None:
            return None
        cutoff = now - window
        while log and log[0] <= cutoff:
            log.popleft()
        if not log:
            self._drop(key)
            return None
        return log

    # ---------------------------------------------------------------- counters
    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        if ttl is not None:
            require_positive("ttl", ttl)
        now = self._clock()
        raw = self._typed(key, str, now)
        if raw is None:
            self._store(key, str(amount), None if ttl is None else now + ttl)
            return amount
        value = int(raw) + amount  # a non-integer value fails like Redis INCRBY does
        self._data[key] = str(value)  # keeps the existing ttl: fixed window
        self._wrote()
        return value

    async def incr_float(self, key: str, amount: float, ttl: float | None = None) -> float:
        if ttl is not None:
            require_positive("ttl", ttl)
        now = self._clock()
        raw = self._typed(key, str, now)
        value = float(amount) if raw is None else float(raw) + amount
        if not math.isfinite(value):
            raise ValueError("increment would produce NaN or Infinity")
        if raw is None:
            self._store(key, _format_float(value), None if ttl is None else now + ttl)
        else:
            self._data[key] = _format_float(value)
            self._wrote()
        return value

    async def get_int(self, key: str) -> int:
        return parse_int(self._typed(key, str))

    async def get_float(self, key: str) -> float:
        raw = self._typed(key, str)
        return 0.0 if raw is None else float(raw)

    # ---------------------------------------------------------------- sliding window
    async def hit(self, key: str, limit: int, window: float) -> RateDecision:
        require_positive("window", window)
        now = self._clock()
        log = self._prune_log(key, window, now)
        count = 0 if log is None else len(log)
        if limit <= 0:
            return RateDecision(True, count, limit, 0.0)
        if log is not None and count >= limit:
            return RateDecision(False, count, limit, max(log[0] + window - now, 0.0))
        self._record_hit(key, log, window, now)
        return RateDecision(True, count + 1, limit, 0.0)

    def _record_hit(self, key: str, log: deque[float] | None, window: float, now: float) -> None:
        """Add a hit to a (pruned) rate log; the key dies when its newest hit leaves the window."""
        log = deque() if log is None else log
        # Clamp so the log stays sorted even if the wall clock steps backwards.
        stamp = max(now, log[-1]) if log else now
        log.append(stamp)
        self._store(key, log, stamp + window)

    async def peek(self, key: str, window: float) -> int:
        require_positive("window", window)
        log = self._typed(key, deque)
        if log is None:
            return 0
        # Count without pruning: a peek with a shorter window must not destroy hits a longer
        # window (another limit on the same key) still needs.
        cutoff = self._clock() - window
        return sum(1 for stamp in log if stamp > cutoff)

    # ---------------------------------------------------------------- slots
    # A slot set is pruned of expired leases only when a decision needs it (the set looks full)
    # or when it is read whole: taking, renewing and releasing a slot cost O(1), however many
    # requests (thousands of open streams) hold one.

    def _full(self, key: str, holder: str, limit: int, now: float) -> bool:
        """Whether `holder` finds no free slot under `limit` (expired leases do not count)."""
        slots = self._typed(key, dict, now)
        if slots is None or holder in slots or not 0 < limit <= len(slots):
            return False
        slots = self._prune_slots(key, now)
        return slots is not None and limit <= len(slots)

    async def acquire_slot(self, key: str, holder: str, limit: int, lease: float) -> bool:
        require_positive("lease", lease)
        now = self._clock()
        if self._full(key, holder, limit, now):
            return False
        self._lease_slot(key, holder, now + lease, now)
        return True

    def _lease_slot(self, key: str, holder: str, until: float, now: float) -> None:
        """Give (or renew) the holder a slot; the set lives as long as its latest lease."""
        slots = self._typed(key, dict, now)
        if slots is None:
            slots = {}
            expires = until
        else:
            expires = max(self._expires.get(key, until), until)
        slots[holder] = until
        self._store(key, slots, expires)

    async def release_slot(self, key: str, holder: str) -> None:
        slots = self._typed(key, dict)
        if slots is None or slots.pop(holder, None) is None:
            return
        if not slots:
            self._drop(key)
        # Otherwise the set keeps its expiry: a later one than needed only delays a drop that
        # pruning or the sweep does anyway.

    async def renew_slot(self, key: str, holder: str, lease: float) -> bool:
        require_positive("lease", lease)
        now = self._clock()
        slots = self._typed(key, dict, now)
        held = None if slots is None else slots.get(holder)
        if held is None:
            return False
        if held <= now:  # its lease ran out: the slot is gone, as if pruned
            del slots[holder]  # type: ignore[union-attr]
            if not slots:
                self._drop(key)
            return False
        self._lease_slot(key, holder, now + lease, now)
        return True

    async def slot_count(self, key: str) -> int:
        slots = self._prune_slots(key, self._clock())
        return 0 if slots is None else len(slots)

    async def slot_counts(self, keys: Sequence[str]) -> list[int]:
        return [await self.slot_count(key) for key in keys]

    async def slot_holders(self, key: str) -> list[str]:
        slots = self._prune_slots(key, self._clock())
        return [] if slots is None else sorted(slots, key=lambda h: (slots[h], h))

    async def reset_slots(self, key: str) -> int:
        slots = self._prune_slots(key, self._clock())
        self._drop(key)
        return 0 if slots is None else len(slots)

    # ---------------------------------------------------------------- gates
    def _failure(self, gate: Gate, holder: str, now: float) -> tuple[float, bool] | None:
        """None when the gate passes, else (seconds until it may, failed on a budget)."""
        if gate.kind == "rate":
            log = self._prune_log(gate.key, gate.span, now)
            if log is not None and len(log) >= gate.limit:
                return max(log[0] + gate.span - now, 0.0), False
        elif gate.kind == "count":
            if parse_int(self._typed(gate.key, str, now)) + gate.amount > gate.limit:
                return 0.0, False
        elif gate.kind == "budget":
            budget = self._typed(gate.key, _Budget, now)
            assert budget is not None  # seeded before any check
            budget.prune(now)
            if budget.used + budget.held >= gate.limit:
                return 0.0, True
        elif self._full(gate.key, holder, gate.limit, now):
            return 0.0, False
        return None

    def _first_failure(
        self, gates: Sequence[Gate], holder: str, now: float
    ) -> tuple[int, float, bool] | None:
        for index, gate in enumerate(gates):
            failure = self._failure(gate, holder, now)
            if failure is not None:
                return index, failure[0], failure[1]
        return None

    def _take(self, gate: Gate, holder: str, lease: float, now: float) -> None:
        if gate.kind == "rate":
            self._record_hit(gate.key, self._prune_log(gate.key, gate.span, now), gate.span, now)
        elif gate.kind == "count":
            self._data[gate.key] = str(parse_int(self._typed(gate.key, str, now)) + int(gate.amount))
        elif gate.kind == "budget":
            budget = self._typed(gate.key, _Budget, now)
            assert budget is not None
            hold = min(gate.amount, gate.limit - budget.used - budget.held)
            if hold > 0:
                budget.held += hold
                budget.holds[holder] = (hold, now + lease)
            self._store(gate.key, budget, now + gate.span)
        else:
            self._lease_slot(gate.key, holder, now + gate.span, now)

    async def admit(
        self,
        holder: str,
        lease: float,
        required: Sequence[Gate],
        choices: Sequence[Sequence[Gate]] = (),
        *,
        must_choose: bool = False,
    ) -> Verdict:
        require_positive("lease", lease)
        now = self._clock()
        missing = [
            gate
            for gates in ((required, *choices) if choices else (required,))
            for gate in gates
            if gate.kind in ("count", "budget") and self._live(gate.key, now) is None
        ]
        if missing:
            return Verdict(False, unseeded=tuple(missing))
        failed = self._first_failure(required, holder, now)
        if failed is not None:
            return Verdict(False, group=None, gate=failed[0], retry_after=failed[1])
        chosen = None
        if choices:
            chosen, refusal, refusing = pick(
                [self._first_failure(g, holder, now) for g in choices], must_choose
            )
            if refusal is not None:
                return Verdict(False, group=refusing, gate=refusal[0], retry_after=refusal[1])
        for gate in required:
            self._take(gate, holder, lease, now)
        if chosen is None:
            return ADMITTED
        for gate in choices[chosen]:
            self._take(gate, holder, lease, now)
        return Verdict(True, choice=chosen)

    async def seed(self, gate: Gate, value: float) -> None:
        now = self._clock()
        if self._live(gate.key, now) is not None:
            return
        stored: _Value = str(int(value)) if gate.kind == "count" else _Budget(float(value))
        self._store(gate.key, stored, now + gate.span)

    async def settle(
        self,
        holder: str,
        *,
        budgets: Sequence[tuple[str, float]] = (),
        counts: Sequence[tuple[str, int]] = (),
        slots: Sequence[str] = (),
    ) -> None:
        now = self._clock()
        for key, used in budgets:
            budget = self._typed(key, _Budget, now)
            if budget is None:  # expired meanwhile: rebuilt from the database when next needed
                continue
            hold = budget.holds.pop(holder, None)
            if hold is not None:
                budget.held = max(0.0, budget.held - hold[0])
            budget.used += used
        for key, amount in counts:
            raw = self._typed(key, str, now)
            if raw is not None:
                self._data[key] = str(parse_int(raw) - amount)
        for key in slots:
            await self.release_slot(key, holder)

    async def renew_holds(
        self, holder: str, lease: float, *, slots: Sequence[str] = (), budgets: Sequence[str] = ()
    ) -> None:
        require_positive("lease", lease)
        for key in slots:
            await self.renew_slot(key, holder, lease)
        now = self._clock()
        for key in budgets:
            budget = self._typed(key, _Budget, now)
            if budget is not None and holder in budget.holds:
                budget.holds[holder] = (budget.holds[holder][0], now + lease)

    async def budget(self, key: str) -> tuple[float, float] | None:
        budget = self._typed(key, _Budget)
        if budget is None:
            return None
        budget.prune(self._clock())
        return budget.used, budget.held

    # ---------------------------------------------------------------- key/value
    async def get(self, key: str) -> str | None:
        return self._typed(key, str)

    async def set(
        self, key: str, value: str, ttl: float | None = None, *, only_if_absent: bool = False
    ) -> bool:
        if ttl is not None:
            require_positive("ttl", ttl)
        now = self._clock()
        if only_if_absent and self._live(key, now) is not None:
            return False
        self._store(key, value, None if ttl is None else now + ttl)
        return True

    async def get_with_ttl(self, keys: Sequence[str]) -> list[tuple[str | None, float | None]]:
        now = self._clock()
        found: list[tuple[str | None, float | None]] = []
        for key in keys:
            value = self._typed(key, str, now)
            expires = self._expires.get(key) if value is not None else None
            found.append((value, None if expires is None else expires - now))
        return found

    async def pop(self, key: str) -> str | None:
        value = self._typed(key, str)
        if value is not None:
            self._drop(key)
        return value

    async def delete(self, *keys: str) -> int:
        now = self._clock()
        removed = 0
        for key in set(keys):  # DEL a a counts "a" once
            if self._live(key, now) is not None:
                self._drop(key)
                removed += 1
        return removed

    async def expire(self, key: str, ttl: float) -> bool:
        require_positive("ttl", ttl)
        now = self._clock()
        if self._live(key, now) is None:
            return False
        self._expires[key] = now + ttl
        return True

    async def ttl(self, key: str) -> float | None:
        now = self._clock()
        if self._live(key, now) is None:
            return None
        expires = self._expires.get(key)
        return None if expires is None else expires - now

    async def scan(self, prefix: str) -> list[str]:
        now = self._clock()
        return sorted(k for k in list(self._data) if k.startswith(prefix) and self._live(k, now) is not None)

    # ---------------------------------------------------------------- locks
    async def acquire_lock(self, key: str, ttl: float) -> str | None:
        require_positive("ttl", ttl)
        now = self._clock()
        if self._live(key, now) is not None:
            return None
        token = secrets.token_hex(16)
        self._store(key, token, now + ttl)
        return token

    async def release_lock(self, key: str, token: str) -> bool:
        if self._live(key) != token:
            return False
        self._drop(key)
        return True

    # ---------------------------------------------------------------- lifecycle
    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self._data.clear()
        self._expires.clear()
