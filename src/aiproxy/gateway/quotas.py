"""What each account's upstream last said about its quota, for the admin's account view.

Subscription upstreams report their plan windows on every answer: Claude's unified limiter
(5-hour and 7-day utilisation and resets), Codex's primary and secondary windows, Gemini's
RESOURCE_EXHAUSTED reason and retry delay. Providers read those signals (`Provider.quota`);
the scheduling consequences (a refusal cools the account down until the reset) are already
taken by the relay through `rejected`/`resets_at`. This board only keeps the latest snapshot
per account in shared state, so every instance shows the same one.

Writing it is off the request's path (a background task) and throttled per account: the
answers of an error are always read (a refusal is news), a success's at most every
`WRITE_EVERY` seconds, and a snapshot is written when its statuses changed or that much
time has passed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson

from ..store.state import SharedState, StateUnavailable

log = logging.getLogger(__name__)

WRITE_EVERY = 10.0
KEEP_FOR = 8 * 86400.0  # a 7-day window's snapshot stays readable for its whole window


def quota_key(account_id: int) -> str:
    return f"quota:account:{account_id}"


def _statuses(snapshot: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(
        (name, value.get("status")) if isinstance(value, dict) else (name, value)
        for name, value in sorted(snapshot.items())
        if name == "status" or isinstance(value, dict)
    )


class QuotaBoard:
    def __init__(self, state: SharedState) -> None:
        self._state = state
        self._written: dict[int, tuple[float, tuple[Any, ...]]] = {}
        self._pending: set[asyncio.Task[None]] = set()

    def due(self, account_id: int) -> bool:
        """Whether a success's signals are worth reading now (cheap: no header is parsed)."""
        last = self._written.get(account_id)
        return last is None or time.monotonic() - last[0] >= WRITE_EVERY

    def note(self, account_id: int, snapshot: dict[str, Any]) -> None:
        """Remember a snapshot (written in the background when it is news)."""
        now = time.monotonic()
        statuses = _statuses(snapshot)
        last = self._written.get(account_id)
        if last is not None and last[1] == statuses and now - last[0] < WRITE_EVERY:
            return
        self._written[account_id] = (now, statuses)
        stamped = {**snapshot, "updated_at": int(time.time())}
        task = asyncio.ensure_future(self._write(account_id, stamped))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _write(self, account_id: int, snapshot: dict[str, Any]) -> None:
        try:
            await self._state.set(quota_key(account_id), orjson.dumps(snapshot).decode(), ttl=KEEP_FOR)
        except StateUnavailable:
            self._written.pop(account_id, None)  # write it again once state is back

    async def drain(self) -> None:
        """Let the writes under way finish (shutdown)."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)


async def read_quota(state: SharedState, account_id: int) -> dict[str, Any] | None:
    """The account's last snapshot; None when there is none (or shared state cannot say)."""
    try:
        raw = await state.get(quota_key(account_id))
    except StateUnavailable:
        return None
    return orjson.loads(raw) if raw else None
