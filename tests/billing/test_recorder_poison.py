"""One row the database refuses must not hold back every row after it, nor lose its usage."""

from __future__ import annotations

import dataclasses

from sqlalchemy import func, select

from aiproxy.billing.recorder import ISOLATE_AFTER, UsageRecorder
from aiproxy.store.db import Database
from aiproxy.store.models import RequestLog

from .test_journal import make_event, new_key


async def _rows(database: Database) -> list[str]:
    async with database.session() as session:
        return list(await session.scalars(select(RequestLog.request_id).order_by(RequestLog.id)))


async def test_an_unwritable_event_is_stored_defanged_after_retries_and_the_rest_written(
    db: Database,
) -> None:
    user_id, key_id = await new_key(db)
    recorder = UsageRecorder(db)
    good = [make_event(user_id, key_id, n) for n in range(3)]
    # Beyond SQLite's 64-bit integers: refused by the driver, whatever the other rows hold.
    poison = dataclasses.replace(make_event(user_id, key_id, 99), duration_ms=2**70)
    for event in (good[0], poison, good[1], good[2]):
        recorder.record(event)
    for _ in range(ISOLATE_AFTER - 1):
        assert await recorder.flush() is False  # retried as a batch first: it may be a passing outage
        assert await _rows(db) == []
    assert await recorder.flush() is True
    assert await _rows(db) == [good[0].request_id, poison.request_id, good[1].request_id, good[2].request_id]
    assert (recorder.written, recorder.defanged, recorder.pending) == (4, 1, 0)
    async with db.session() as session:
        stored = (
            await session.execute(
                select(RequestLog.duration_ms, RequestLog.input_tokens).where(
                    RequestLog.request_id == poison.request_id
                )
            )
        ).one()
    assert stored == (2**31 - 1, poison.usage.input_tokens)  # clamped, and its tokens still count


async def test_nothing_is_dropped_while_the_database_is_down(db: Database) -> None:
    user_id, key_id = await new_key(db)
    recorder = UsageRecorder(db)
    recorder.record(make_event(user_id, key_id, 1))
    await db.close()  # every write fails now
    broken = Database("sqlite+aiosqlite:////nonexistent/dir/aiproxy.db")
    recorder._db = broken
    for _ in range(ISOLATE_AFTER + 2):
        assert await recorder.flush() is False
    assert (recorder.defanged, recorder.written, recorder.pending) == (0, 0, 1)
    await broken.close()


async def test_nul_characters_are_stored_replaced(db: Database) -> None:
    user_id, key_id = await new_key(db)
    recorder = UsageRecorder(db)
    recorder.record(dataclasses.replace(make_event(user_id, key_id, 1), model="claude-x\x00", path="/a\x00b"))
    assert await recorder.flush() is True
    async with db.session() as session:
        model, path = (await session.execute(select(RequestLog.model, RequestLog.path))).one()
        assert (model, path) == ("claude-x\ufffd", "/a\ufffdb")
        assert await session.scalar(select(func.count()).select_from(RequestLog)) == 1
