"""Retention on a real database (SQLite + in-process state, PostgreSQL + Redis): exactly the old
request and operation logs go, in batches; usage records and the daily roll-up stay; one instance
runs at a time."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from sqlalchemy import event, func, insert, select

from aiproxy.billing import retention
from aiproxy.billing.retention import (
    LAST_RUN,
    LOCK,
    RetentionJob,
    cutoff_for,
    next_batch_size,
    purge,
)
from aiproxy.runtime_configs import RuntimeConfigs
from aiproxy.store.db import Database
from aiproxy.store.migrate import upgrade_to_head
from aiproxy.store.models import DailyUsage, OperationLog, RequestLog, UsageRecord, utcnow
from aiproxy.store.state import LockNotAcquired, SharedState, open_state

from ..support import create_pg_database, drop_pg_database, redis_url_or_skip

DAY = timedelta(days=1)
BODY = "x" * 2048  # a captured request body: the rows retention exists for are wide


@dataclass
class Store:
    db: Database
    state: SharedState
    configs: RuntimeConfigs


@pytest.fixture(scope="module", params=["sqlite", "postgres+redis"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One migrated database per backend for this module; every test cleans the tables it fills."""
    directory = tmp_path_factory.mktemp("retention")
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{directory / 'aiproxy.db'}"
        upgrade_to_head(url, directory)
        yield url
        return
    url, name = create_pg_database()
    try:
        upgrade_to_head(url, directory)
        yield url
    finally:
        drop_pg_database(name)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    db = Database(database_url)
    redis_url = None if database_url.startswith("sqlite") else redis_url_or_skip()
    state = open_state(redis_url, prefix=f"aiproxy-test:{uuid.uuid4().hex[:8]}:")
    configs = RuntimeConfigs(db)
    await configs.load()
    try:
        yield Store(db, state, configs)
    finally:
        async with db.engine.begin() as conn:
            for table in (RequestLog, OperationLog, UsageRecord, DailyUsage):
                await conn.execute(table.__table__.delete())
        for key in await state.scan(""):
            await state.delete(key)
        await state.close()
        await db.close()


def _log_row(at: datetime, n: int) -> dict[str, Any]:
    return {
        "request_id": f"r{uuid.uuid4().hex[:12]}-{n}",
        "user_id": 1,
        "api_key_id": 1,
        "model": "claude-sonnet-4-5",
        "request_body": BODY,
        "created_at": at,
    }


async def _fill(db: Database, table: Any, rows: list[dict[str, Any]]) -> None:
    async with db.engine.begin() as conn:
        for start in range(0, len(rows), 2000):
            await conn.execute(insert(table), rows[start : start + 2000])


async def _count(db: Database, model: Any, *conditions: Any) -> int:
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*conditions)) or 0)


async def _billing(db: Database, old: datetime) -> None:
    """Usage records and daily rows as old as the old logs: they must survive."""
    await _fill(
        db,
        UsageRecord,
        [{"request_id": f"u{n}", "user_id": 1, "total_tokens": 10, "created_at": old} for n in range(50)],
    )
    await _fill(
        db,
        DailyUsage,
        [
            {"day": old.date() - timedelta(days=n), "user_id": 1, "model": "m", "request_count": 1}
            for n in range(5)
        ],
    )


class Deletes:
    """Counts the DELETE statements the engine runs and the rows each removed."""

    def __init__(self, db: Database) -> None:
        self.rowcounts: list[int] = []
        self._engine = db.engine.sync_engine
        event.listen(self._engine, "after_cursor_execute", self._seen)

    def _seen(self, _conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE"):
            self.rowcounts.append(cursor.rowcount)

    def close(self) -> None:
        event.remove(self._engine, "after_cursor_execute", self._seen)


def test_cutoff_and_batch_sizes() -> None:
    now = datetime(2030, 1, 31, 12, 0)
    assert cutoff_for(30, now) == datetime(2030, 1, 1, 12, 0)
    assert cutoff_for(10**8, now) is None  # beyond the calendar: keep everything
    # Aimed at BATCH_TARGET seconds, at most doubling, within the bounds.
    assert next_batch_size(2000, retention.BATCH_TARGET) == 2000
    assert next_batch_size(2000, retention.BATCH_TARGET * 2) == 1000
    assert next_batch_size(2000, retention.BATCH_TARGET / 10) == 4000
    assert next_batch_size(4000, 0.0) == retention.MAX_BATCH
    assert next_batch_size(300, 10.0) == retention.MIN_BATCH


async def test_purge_deletes_exactly_the_old_rows_in_batches(store: Store) -> None:
    db = store.db
    now = utcnow()
    cutoff = now - 30 * DAY
    old = [_log_row(cutoff - timedelta(seconds=1 + n), n) for n in range(5500)]
    young = [_log_row(cutoff + timedelta(seconds=1 + n), n) for n in range(300)]
    edge = _log_row(cutoff, -1)  # exactly at the cutoff: not older than it, kept
    await _fill(db, RequestLog, old + young + [edge])
    await _billing(db, cutoff - 5 * DAY)

    deletes = Deletes(db)
    try:
        purged = await purge(db, RequestLog.__table__, cutoff, batch=1000, adapt=False, min_pause=0.0)
    finally:
        deletes.close()

    assert (purged.deleted, purged.batches, purged.complete) == (5500, 6, True)
    assert deletes.rowcounts == [1000] * 5 + [500]  # one statement per batch, none larger
    kept = {r["request_id"] for r in young} | {edge["request_id"]}
    async with db.session() as session:
        left = set(await session.scalars(select(RequestLog.request_id)))
    assert left == kept
    assert await _count(db, UsageRecord) == 50 and await _count(db, DailyUsage) == 5

    # Nothing old left: one statement that deletes nothing.
    again = await purge(db, RequestLog.__table__, cutoff, batch=1000, adapt=False, min_pause=0.0)
    assert (again.deleted, again.batches, again.complete) == (0, 0, True)


async def test_purge_stops_at_its_deadline(store: Store) -> None:
    cutoff = utcnow() - 30 * DAY
    await _fill(store.db, RequestLog, [_log_row(cutoff - DAY, n) for n in range(1200)])
    purged = await purge(
        store.db, RequestLog.__table__, cutoff, batch=500, adapt=False, deadline=time.monotonic()
    )
    assert (purged.deleted, purged.batches, purged.complete) == (500, 1, False)
    assert await _count(store.db, RequestLog) == 700


def _job(store: Store, **kw: Any) -> RetentionJob:
    services = cast(Any, store)  # the job reads .db, .state and .configs only
    return RetentionJob(services, **kw)


async def test_a_run_applies_both_retentions_and_keeps_billing(store: Store) -> None:
    db, configs = store.db, store.configs
    now = utcnow()
    await _fill(
        db,
        RequestLog,
        [_log_row(now - 31 * DAY, n) for n in range(2500)] + [_log_row(now - 29 * DAY, n) for n in range(40)],
    )
    ops = [(now - 91 * DAY, "old"), (now - 89 * DAY, "kept")] * 3
    await _fill(
        db,
        OperationLog,
        [{"action": "create", "resource": "user", "description": tag, "created_at": at} for at, tag in ops],
    )
    await _billing(db, now - 400 * DAY)

    job = _job(store)
    record = await job.run()

    assert record["request_logs"] == 2500 and record["operation_logs"] == 3
    assert record["complete"] is True and "error" not in record
    assert await _count(db, RequestLog) == 40
    assert await _count(db, RequestLog, RequestLog.created_at < now - 30 * DAY) == 0
    async with db.session() as session:
        assert set(await session.scalars(select(OperationLog.description))) == {"kept"}
    assert await _count(db, UsageRecord) == 50 and await _count(db, DailyUsage) == 5
    # The run is kept in shared state for every instance; the next one is an interval later.
    stored = orjson.loads(await store.state.get(LAST_RUN) or "{}")
    assert stored["next_at"] == pytest.approx(stored["started_at"] + configs.get("log_cleanup_interval"))
    assert await job.run() == {}  # not due again yet
    assert job.runs == 1


async def test_retention_days_come_from_the_configs(store: Store) -> None:
    now = utcnow()
    await _fill(store.db, RequestLog, [_log_row(now - 8 * DAY, n) for n in range(10)])
    job = _job(store)
    await job.run()
    assert await _count(store.db, RequestLog) == 10  # 8 days < 30
    await store.configs.set("request_log_retention_days", 7)
    await store.state.delete(LAST_RUN)  # due again at once
    try:
        assert (await job.run())["request_logs"] == 10
    finally:
        await store.configs.set("request_log_retention_days", 30)
    assert await _count(store.db, RequestLog) == 0


async def test_one_instance_at_a_time(store: Store) -> None:
    now = utcnow()
    await _fill(store.db, RequestLog, [_log_row(now - 40 * DAY, n) for n in range(3000)])
    # Someone else holds the lock: this instance does nothing and says so.
    async with store.state.lock(LOCK, 30):
        with pytest.raises(LockNotAcquired):
            await _job(store).run()
    assert await _count(store.db, RequestLog) == 3000

    # Two instances at once: one runs, the other finds the lock taken; the rows go once.
    first, second = _job(store), _job(store)
    results = await asyncio.gather(first.run(), second.run(), return_exceptions=True)
    done = [r for r in results if isinstance(r, dict)]
    assert len(done) == 1 and done[0]["request_logs"] == 3000
    assert [type(r) for r in results if not isinstance(r, dict)] == [LockNotAcquired]
    assert await _count(store.db, RequestLog) == 0


async def test_a_run_out_of_budget_carries_on_at_the_next_tick(store: Store) -> None:
    now = utcnow()
    await _fill(store.db, RequestLog, [_log_row(now - 40 * DAY, n) for n in range(4500)])
    job = _job(store, budget=0.0, tick=0.05)
    record = await job.run()
    assert record["complete"] is False and record["request_logs"] == retention.FIRST_BATCH
    assert record["next_at"] == pytest.approx(record["finished_at"])
    assert await _count(store.db, RequestLog) == 4500 - retention.FIRST_BATCH

    # The scheduler takes up the rest on its next ticks, one budget-limited batch at a time.
    job.start()
    try:
        for _ in range(600):  # 30 s at most
            last = orjson.loads(await store.state.get(LAST_RUN) or "{}")
            if last.get("complete"):  # the run that found nothing more to delete has ended
                break
            await asyncio.sleep(0.05)
    finally:
        await job.close()
    assert await _count(store.db, RequestLog) == 0
    assert last["complete"] is True and job.runs >= 3


async def test_a_run_cancelled_by_a_shutdown_leaves_the_rest_due(store: Store) -> None:
    now = utcnow()
    await _fill(store.db, RequestLog, [_log_row(now - 40 * DAY, n) for n in range(20_000)])
    job = _job(store)
    running = asyncio.create_task(job.run())
    for _ in range(600):
        if await _count(store.db, RequestLog) < 20_000:
            break
        await asyncio.sleep(0.01)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    left = await _count(store.db, RequestLog)
    assert 0 < left < 20_000  # whole batches only: the one under way was rolled back or committed
    last = orjson.loads(await store.state.get(LAST_RUN) or "{}")
    assert last["complete"] is False and "error" not in last
    assert last["next_at"] == pytest.approx(last["finished_at"])  # due again at the next tick
    assert await store.state.get(LOCK) is None  # released on the way out


async def test_a_failed_run_is_retried_later_not_every_tick(store: Store, tmp_path: Path) -> None:
    broken = Database(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'no.db'}")  # cannot be opened
    job = RetentionJob(cast(Any, Store(broken, store.state, store.configs)))
    try:
        with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises
            await job.run()
    finally:
        await broken.close()
    last = orjson.loads(await store.state.get(LAST_RUN) or "{}")
    assert last["complete"] is False and last["error"]
    assert last["next_at"] >= last["finished_at"] + retention.RETRY_AFTER_ERROR - 1
    assert str(tmp_path) not in orjson.dumps(last).decode()  # the type only: details go to the log


def test_billing_history_is_not_a_target() -> None:
    """Usage records (no text from clients) and the daily roll-up are never retention targets."""
    assert {target.table.name for target in retention.TARGETS} == {"request_logs", "operation_logs"}
