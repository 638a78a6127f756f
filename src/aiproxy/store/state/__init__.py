"""Shared state (counters, rate limits, slots, single-use values, locks) behind one interface.

Pick the backend with :func:`open_state`: in-process memory for a single instance, Redis as soon as
more than one instance must agree on limits.
"""

from __future__ import annotations

from .base import LockNotAcquired, RateDecision, SharedState
from .memory import MemoryState
from .redis import RedisState

__all__ = ["LockNotAcquired", "MemoryState", "RateDecision", "RedisState", "SharedState", "open_state"]


def open_state(redis_url: str | None, *, prefix: str = "aiproxy:") -> SharedState:
    """``None`` (or empty) -> :class:`MemoryState`; otherwise a :class:`RedisState` for the URL.

    The Redis connection is opened lazily, so call ``await state.ping()`` at startup to fail fast."""
    if not redis_url:
        return MemoryState(prefix=prefix)
    return RedisState.from_url(redis_url, prefix=prefix)
