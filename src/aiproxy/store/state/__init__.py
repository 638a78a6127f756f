"""Shared state (counters, rate limits, slots, single-use values, locks) behind one interface.

Pick the backend with :func:`open_state`: in-process memory for a single instance, Redis as soon as
more than one instance must agree on limits.
"""

from __future__ import annotations

from .base import LockNotAcquired, RateDecision, SharedState, StateUnavailable, warn_unavailable
from .memory import MemoryState
from .redis import DEFAULT_TIMEOUT, RedisState

__all__ = [
    "LockNotAcquired",
    "MemoryState",
    "RateDecision",
    "RedisState",
    "SharedState",
    "StateUnavailable",
    "open_state",
    "warn_unavailable",
]


def open_state(
    redis_url: str | None, *, prefix: str = "aiproxy:", timeout: float = DEFAULT_TIMEOUT
) -> SharedState:
    """``None`` (or empty) -> :class:`MemoryState`; otherwise a :class:`RedisState` for the URL whose
    connects, replies and pool waits are bounded by ``timeout`` seconds.

    The Redis connection is opened lazily, so call ``await state.ping()`` at startup to fail fast."""
    if not redis_url:
        return MemoryState(prefix=prefix)
    return RedisState.from_url(redis_url, prefix=prefix, timeout=timeout)
