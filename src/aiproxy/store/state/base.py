"""The shared-state interface used for everything that must agree across app instances.

Rate limits, concurrency slots, single-use tokens (captchas) and locks live here rather than in the
SQL database: they are hot, short-lived and need atomic read-modify-write. Two backends implement
the same contract: :class:`~aiproxy.store.state.memory.MemoryState` for a single process and
:class:`~aiproxy.store.state.redis.RedisState` when several instances share one Redis.

Conventions shared by every backend:

* Keys are plain strings; the backend adds its own namespace prefix and strips it again in
  :meth:`SharedState.scan`, so callers never see it.
* All durations (``ttl``, ``lease``, ``window``) are float seconds; sub-second values are honoured.
  They must be > 0 (ValueError otherwise); ``ttl=None`` means "no expiry" where it is optional.
* One key holds one kind of value (counter/string, rate log, slot set). Mixing operation families
  on the same key is a programming error and fails the way the backend fails (Redis: WRONGTYPE).
* When the backend cannot be reached (connection refused, timeout), every operation raises
  :class:`StateUnavailable`, so callers decide in one ``except`` whether to carry on without shared
  state (caches, stickiness) or to refuse (limits that cannot be checked).
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import ClassVar, Self

from ...errors import ServiceUnavailable
from .gates import Gate, Verdict

__all__ = [
    "LockNotAcquired",
    "RateDecision",
    "SharedState",
    "StateUnavailable",
    "parse_int",
    "require_positive",
    "warn_unavailable",
]


class LockNotAcquired(RuntimeError):
    """Raised by :meth:`SharedState.lock` when the lock is still held by someone else after ``wait``."""


class StateUnavailable(ServiceUnavailable):
    """The shared state cannot be reached right now (connection refused or lost, timeout, pool exhausted).

    A :class:`~aiproxy.errors.ServiceUnavailable`, so an ``/api`` route that needs shared state (captcha,
    login counter) answers 503 in the envelope without handling it itself; the gateway decides per use
    whether to serve without it or to refuse the request."""

    default_message = "共享状态（Redis）暂不可用，请稍后重试"

    def __init__(self, reason: str = "") -> None:
        super().__init__()
        #: What went wrong, for the server log; the message stays the one clients are shown.
        self.reason = reason


#: Seconds between two "serving without shared state" warnings from the same place: an outage is worth
#: a line in the log, not one per request.
WARN_EVERY = 10.0
_warned_at: dict[str, float] = {}


def warn_unavailable(logger: logging.Logger, what: str, exc: BaseException) -> None:
    """Log that ``what`` carries on without shared state, at most once per :data:`WARN_EVERY` per ``what``."""
    now = time.monotonic()
    if now - _warned_at.get(what, -WARN_EVERY) < WARN_EVERY:
        return
    _warned_at[what] = now
    reason = getattr(exc, "reason", "") or f"{type(exc).__name__}: {exc}"
    logger.warning("shared state unavailable (%s): %s", reason, what)


@dataclass(frozen=True, slots=True)
class RateDecision:
    """Outcome of one sliding-window :meth:`SharedState.hit`.

    ``count`` is the number of hits inside the window *after* this call (so it includes this hit when
    allowed); ``retry_after`` is 0 when allowed, otherwise the seconds until the oldest hit leaves the
    window, which is the earliest moment a retry can succeed (suitable for a ``Retry-After`` header).
    """

    allowed: bool
    count: int
    limit: int
    retry_after: float


def parse_int(raw: str | None) -> int:
    """Read a stored counter as int; tolerate a float-formatted value (``incr_float`` on the same key)."""
    if raw is None:
        return 0
    try:
        return int(raw)
    except ValueError:
        return int(float(raw))


def require_positive(name: str, seconds: float) -> float:
    """Reject zero/negative durations up front: Redis would reject them mid-script (or, for PEXPIRE,
    silently delete the key), and both backends must fail the same way."""
    if not seconds > 0:  # also catches NaN
        raise ValueError(f"{name} must be > 0 seconds, got {seconds!r}")
    return seconds


class SharedState(ABC):
    """Abstract shared-state store. Every method is safe to call concurrently from many tasks."""

    #: "memory" or "redis"; lets callers (health checks, admin UI) report which backend is active.
    kind: ClassVar[str]

    @property
    def available(self) -> bool:
        """False while the backend is known to be unreachable (its last call failed and it is not
        being waited on until the next probe); no I/O. Always True for the in-process backend."""
        return True

    # ---------------------------------------------------------------- counters
    @abstractmethod
    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Add ``amount`` and return the new value. ``ttl`` is applied only when this call creates the
        key (fixed window): later increments do not extend it."""

    @abstractmethod
    async def incr_float(self, key: str, amount: float, ttl: float | None = None) -> float:
        """Float variant of :meth:`incr` (e.g. spend in dollars); same fixed-window ttl rule."""

    @abstractmethod
    async def get_int(self, key: str) -> int:
        """Current counter value, 0 if missing."""

    @abstractmethod
    async def get_float(self, key: str) -> float:
        """Current float counter value, 0.0 if missing."""

    # ---------------------------------------------------------------- sliding-window rate limit
    @abstractmethod
    async def hit(self, key: str, limit: int, window: float) -> RateDecision:
        """Exact sliding-window limiter: record a hit if fewer than ``limit`` hits happened in the last
        ``window`` seconds. Refused hits are not recorded, so a client hammering a closed window does
        not push its own reopening further out. ``limit <= 0`` means unlimited (allowed, not stored)."""

    @abstractmethod
    async def peek(self, key: str, window: float) -> int:
        """Number of hits within the last ``window`` seconds, without recording one."""

    # ---------------------------------------------------------------- slots / leased semaphores
    @abstractmethod
    async def acquire_slot(self, key: str, holder: str, limit: int, lease: float) -> bool:
        """Take one of ``limit`` slots for ``holder`` for ``lease`` seconds.

        Expired leases are pruned first, so slots held by a crashed instance free themselves.
        Re-acquiring by a current holder renews its lease and succeeds even at the limit.
        ``limit <= 0`` means unlimited, but the holder is still tracked (for :meth:`slot_count`)."""

    @abstractmethod
    async def release_slot(self, key: str, holder: str) -> None:
        """Give the slot back; releasing a slot that is not held is a no-op."""

    @abstractmethod
    async def renew_slot(self, key: str, holder: str, lease: float) -> bool:
        """Extend a live lease to ``lease`` seconds from now; False if the holder no longer has one
        (it expired and may have been taken by someone else, so the caller must not assume it)."""

    @abstractmethod
    async def slot_count(self, key: str) -> int:
        """Number of live (unexpired) leases."""

    @abstractmethod
    async def slot_counts(self, keys: Sequence[str]) -> list[int]:
        """:meth:`slot_count` of each key, read in one round trip: for admin views over many slot
        keys, never the hot path."""

    @abstractmethod
    async def slot_holders(self, key: str) -> list[str]:
        """Holders of live leases, soonest-expiring first."""

    @abstractmethod
    async def reset_slots(self, key: str) -> int:
        """Drop every lease (admin "unstick" action); returns how many live leases were removed."""

    # ---------------------------------------------------------------- gates (see gates.py)
    @abstractmethod
    async def admit(
        self,
        holder: str,
        lease: float,
        required: Sequence[Gate],
        choices: Sequence[Sequence[Gate]] = (),
        *,
        must_choose: bool = False,
    ) -> Verdict:
        """Check every gate and take them all for ``holder`` (budget holds leased for ``lease``
        seconds), or take nothing: see gates.py for the rules."""

    @abstractmethod
    async def seed(self, gate: Gate, value: float) -> None:
        """Create a counter or budget gate's key with ``value`` (counted or used so far), unless
        it exists already (another instance seeded it first)."""

    @abstractmethod
    async def settle(
        self,
        holder: str,
        *,
        budgets: Sequence[tuple[str, float]] = (),
        counts: Sequence[tuple[str, int]] = (),
        slots: Sequence[str] = (),
    ) -> None:
        """End an admission in one step: each budget's hold becomes what was really ``used`` (0
        gives it all back), each count gives back ``amount``, each slot is released."""

    @abstractmethod
    async def renew_holds(
        self, holder: str, lease: float, *, slots: Sequence[str] = (), budgets: Sequence[str] = ()
    ) -> None:
        """Extend the holder's slot leases and budget holds still alive to ``lease`` seconds from now."""

    @abstractmethod
    async def budget(self, key: str) -> tuple[float, float] | None:
        """A budget's ``(used, held)``, None when it is not in shared state."""

    # ---------------------------------------------------------------- key/value
    @abstractmethod
    async def get(self, key: str) -> str | None:
        """Value of a string key, None if missing or expired."""

    @abstractmethod
    async def set(
        self, key: str, value: str, ttl: float | None = None, *, only_if_absent: bool = False
    ) -> bool:
        """Store ``value``; with ``only_if_absent`` it is written only if the key does not exist.
        Returns whether it was written. A plain set without ttl clears any previous ttl."""

    @abstractmethod
    async def get_with_ttl(self, keys: Sequence[str]) -> list[tuple[str | None, float | None]]:
        """For each string key, its value and remaining seconds to live (None, None when missing),
        read in one round trip: for admin listings of many small keys, never the hot path."""

    @abstractmethod
    async def pop(self, key: str) -> str | None:
        """Atomically read and delete: exactly one concurrent caller gets the value (single-use tokens)."""

    @abstractmethod
    async def delete(self, *keys: str) -> int:
        """Delete keys of any kind; returns how many existed."""

    @abstractmethod
    async def expire(self, key: str, ttl: float) -> bool:
        """Set a ttl on an existing key; False if the key does not exist."""

    @abstractmethod
    async def ttl(self, key: str) -> float | None:
        """Remaining seconds to live; None if the key is missing or has no ttl."""

    @abstractmethod
    async def scan(self, prefix: str) -> list[str]:
        """All live keys starting with ``prefix`` (literal, no glob), without the backend namespace, sorted.
        Walks the keyspace incrementally (never blocks Redis), so use it for admin/maintenance paths."""

    # ---------------------------------------------------------------- locks
    @abstractmethod
    async def acquire_lock(self, key: str, ttl: float) -> str | None:
        """Try once to take an exclusive lock; returns the owner token, or None if it is held.
        The ttl bounds how long a crashed owner can block others."""

    @abstractmethod
    async def release_lock(self, key: str, token: str) -> bool:
        """Release only if ``token`` still owns the lock (it may have expired and been re-taken)."""

    @asynccontextmanager
    async def lock(self, key: str, ttl: float, *, wait: float = 0.0) -> AsyncIterator[str]:
        """``async with state.lock(key, ttl, wait=2):`` — retry for up to ``wait`` seconds, then raise
        :class:`LockNotAcquired`. Yields the token; the lock is released on exit even on error."""
        deadline = time.monotonic() + max(wait, 0.0)
        delay = 0.005
        while True:
            token = await self.acquire_lock(key, ttl)
            if token is not None:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LockNotAcquired(f"lock {key!r} is held by another owner (waited {wait:g}s)")
            # Capped exponential backoff: responsive for short critical sections, cheap for long ones.
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.1)
        try:
            yield token
        finally:
            await self.release_lock(key, token)

    # ---------------------------------------------------------------- lifecycle
    @abstractmethod
    async def ping(self) -> bool:
        """True if the backend answers now (readiness checks, start-up); never raises. Unlike the other
        operations it always asks the backend, even while failing fast after an outage."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections; the instance must not be used afterwards."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
