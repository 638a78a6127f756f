"""Retention: request logs and operation logs older than their configured age are deleted.

Request logs hold what a client sent (headers, and bodies when `capture_request_body` is on), so
they are kept `request_log_retention_days` (30) and no longer; operation logs are kept
`operation_log_retention_days` (90). Billing history stays: `usage_records` (tokens, costs and ids,
no text from the client) and the `daily_usage` roll-up are never deleted here, so usage pages and
package accounting read the same before and after a run.

Deleting is done in small batches, each its own short transaction, oldest rows first through the
`created_at` index: `DELETE … WHERE id IN (SELECT id … WHERE created_at < cutoff ORDER BY created_at
LIMIT n)`. A long delete would hold SQLite's only write lock (the usage recorder waits behind it)
and on PostgreSQL keep a transaction open for the whole table; one batch never takes much more than
`BATCH_TARGET` (the batch size adapts to how long the last one took) and is followed by a pause at
least twice its length, so deletion has at most about a third of the database's write time while
the relay serves traffic.

The job runs on every instance but only one at a time does the work: a shared-state lock (like the
health-check sweep), and the last run kept in shared state so that the next one starts
`log_cleanup_interval` seconds later whichever instance takes it. The first run comes a few seconds
after start. A run ends after `RUN_BUDGET` seconds, before its lock could expire; what is left is
taken up at the next tick. `DELETE /api/admin/operation-logs/cleanup` uses the same batched delete.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import orjson
from sqlalchemy import Table, delete, select

from ..background import BackgroundTask
from ..store.models import OperationLog, RequestLog, utcnow
from ..store.state import LockNotAcquired, StateUnavailable, warn_unavailable

if TYPE_CHECKING:
    from ..services import Services
    from ..store.db import Database

log = logging.getLogger(__name__)

LOCK = "retention:lock"
LAST_RUN = "retention:last"
LOCK_TTL = 600.0
RUN_BUDGET = 300.0  # a run stops here, well inside its lock; the rest is left for the next tick
TICK = 5.0  # how often the scheduler looks at the clock; also the delay before the first run
RETRY_AFTER_ERROR = 300.0  # a failed run (database down) is retried this much later, not every tick
FIRST_BATCH = 2000
MIN_BATCH = 200
MAX_BATCH = 5000
BATCH_TARGET = 0.1  # seconds one batch should take; larger or smaller batches follow from it
MIN_PAUSE = 0.05
PAUSE_FACTOR = 2.0  # the pause after a batch lasts at least this many times the batch


@dataclass(frozen=True, slots=True)
class Target:
    """A table the job trims, and the config saying for how many days its rows are kept."""

    name: str
    table: Table
    days_key: str


TARGETS = (
    Target("request_logs", cast(Table, RequestLog.__table__), "request_log_retention_days"),
    Target("operation_logs", cast(Table, OperationLog.__table__), "operation_log_retention_days"),
)


@dataclass(slots=True)
class Purged:
    """What one purge of one table did."""

    deleted: int = 0
    batches: int = 0
    complete: bool = True  # False: stopped at the deadline with old rows left


def cutoff_for(days: int, now: datetime | None = None) -> datetime | None:
    """The moment before which rows are old; None when `days` reaches past the calendar (keep all)."""
    try:
        return (now or utcnow()) - timedelta(days=days)
    except OverflowError:
        return None


def next_batch_size(size: int, took: float) -> int:
    """The next batch's size: aimed at BATCH_TARGET seconds from how long `size` rows took (wide
    rows with captured bodies cost far more per row than narrow ones), within MIN/MAX_BATCH."""
    if took <= 0:
        return MAX_BATCH
    aimed = int(size * BATCH_TARGET / took)
    # Never more than double at once: one fast batch (a cached page run) says little about the next.
    return max(MIN_BATCH, min(MAX_BATCH, aimed, size * 2))


async def purge(
    db: Database,
    table: Table,
    cutoff: datetime,
    *,
    batch: int = FIRST_BATCH,
    adapt: bool = True,
    min_pause: float = MIN_PAUSE,
    deadline: float | None = None,
) -> Purged:
    """Delete the rows of `table` created before `cutoff`, oldest first, batch by batch.

    Each batch is one short transaction; between batches the job pauses (at least `min_pause`, and
    PAUSE_FACTOR times the batch's duration) so that other writers get the database. `deadline`
    (a `time.monotonic()` value) ends the purge early, with `complete` False. `adapt=False` keeps
    every batch at `batch` rows (tests count batches).
    """
    done = Purged()
    created_at, row_id = table.c.created_at, table.c.id
    while True:
        oldest = select(row_id).where(created_at < cutoff).order_by(created_at).limit(batch)
        statement = delete(table).where(row_id.in_(oldest.scalar_subquery()))
        started = time.monotonic()
        async with db.engine.begin() as conn:
            result = await conn.execute(statement)
        took = time.monotonic() - started
        count = int(result.rowcount or 0)
        if count:
            done.deleted += count
            done.batches += 1
        if count < batch:
            return done  # fewer than asked for: nothing older is left
        if deadline is not None and time.monotonic() >= deadline:
            done.complete = False
            return done
        await asyncio.sleep(max(min_pause, PAUSE_FACTOR * took))
        if adapt:
            batch = next_batch_size(batch, took)


class RetentionJob:
    """The periodic run on one instance; see the module docstring."""

    def __init__(self, services: Services, *, tick: float = TICK, budget: float = RUN_BUDGET) -> None:
        self._services = services
        self._state = services.state
        self._configs = services.configs
        self._tick = tick
        self._budget = budget
        self._loop = BackgroundTask("log-retention", self._run_forever)
        self.runs = 0  # runs this instance did (for tests)

    @property
    def interval(self) -> float:
        return float(self._configs.get("log_cleanup_interval"))

    def start(self) -> None:
        self._loop.start()

    async def close(self) -> None:
        await self._loop.close()

    async def _run_forever(self) -> None:
        while True:
            await asyncio.sleep(self._tick)
            try:
                if await self._due():
                    await self.run()
            except LockNotAcquired:
                pass  # another instance is on it
            except StateUnavailable as exc:  # no lock, no coordination: wait for shared state
                warn_unavailable(log, "log retention postponed until shared state is back", exc)
            except Exception:  # a database hiccup must not end the scheduler
                log.exception("log retention run failed")

    async def _due(self) -> bool:
        last = await self.last_run()
        return last is None or time.time() >= float(last.get("next_at", 0.0))

    async def last_run(self) -> dict[str, Any] | None:
        raw = await self._state.get(LAST_RUN)
        if not raw:
            return None
        with contextlib.suppress(orjson.JSONDecodeError):
            value = orjson.loads(raw)
            return value if isinstance(value, dict) else None
        return None

    async def run(self) -> dict[str, Any]:
        """One run under the shared lock (LockNotAcquired when another instance holds it)."""
        async with self._state.lock(LOCK, LOCK_TTL, wait=0):
            if not await self._due():
                return {}  # another instance ran while this one waited for its turn
            return await self._run()

    async def _run(self) -> dict[str, Any]:
        started = time.time()
        deadline = time.monotonic() + self._budget
        record: dict[str, Any] = {"started_at": started, "instance": self._configs.instance_id}
        # Complete only once every table is done: a run cut short (the budget, an error, a shutdown
        # cancelling it) leaves the next one due at once rather than an interval later.
        complete = False
        try:
            for target in TARGETS:
                days = int(self._configs.get(target.days_key))
                cutoff = cutoff_for(days)
                if cutoff is None:
                    record[target.name] = 0
                    continue
                purged = await purge(self._services.db, target.table, cutoff, deadline=deadline)
                record[target.name] = purged.deleted
                if purged.deleted:
                    log.info(
                        "retention: deleted %d %s older than %d days (before %s) in %d batches",
                        purged.deleted,
                        target.name.replace("_", " "),
                        days,
                        cutoff.isoformat(timespec="seconds"),
                        purged.batches,
                    )
                if not purged.complete:
                    log.info("retention: run budget of %.0f s used up; the rest follows", self._budget)
                    break
            else:
                complete = True
        except Exception as exc:
            record["error"] = type(exc).__name__  # the details go to the log, not to shared state
            raise
        finally:
            finished = time.time()
            if "error" in record:
                next_at = finished + min(self.interval, RETRY_AFTER_ERROR)
            elif complete:
                next_at = started + self.interval
            else:
                next_at = finished  # cut short (the budget, a shutdown): carry on at the next tick
            record.update(finished_at=finished, complete=complete, next_at=next_at)
            with contextlib.suppress(StateUnavailable):
                ttl = max(self.interval * 3, 86_400.0)
                await self._state.set(LAST_RUN, orjson.dumps(record).decode(), ttl=ttl)
            self.runs += 1
        return record
