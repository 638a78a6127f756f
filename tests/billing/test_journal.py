"""The usage journal: what a killed recorder had recorded is written at the next start, once.

The recorder runs against a real SQLite database (the project's migrations); "killed" means a
child process that records, maybe commits, and then sends itself SIGKILL.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from sqlalchemy import func, select

from aiproxy.billing.journal import SEGMENT_SUFFIX, Journal
from aiproxy.billing.pricing import Cost, Usage
from aiproxy.billing.recorder import FLUSH_SIZE, UsageRecorder
from aiproxy.billing.usage_event import UsageEvent, event_from_journal
from aiproxy.store.db import Database
from aiproxy.store.models import ApiKey, DailyUsage, RequestLog, UsageRecord, User


async def new_key(db: Database) -> tuple[int, int]:
    async with db.transaction() as session:
        user = User(username=f"u{uuid.uuid4().hex[:8]}", password_hash="-")
        session.add(user)
        await session.flush()
        key = ApiKey(
            user_id=user.id, name="k", key_hash=uuid.uuid4().hex, key_encrypted="-", key_prefix="sk-"
        )
        session.add(key)
        await session.flush()
        return user.id, key.id


def make_event(user_id: int, key_id: int, n: int) -> UsageEvent:
    usage = Usage(
        input_tokens=10 + n,
        output_tokens=5,
        cache_creation_tokens=3,
        cache_read_tokens=2,
        cache_creation_1h_tokens=1,
    )
    # Awkward floats on purpose: they must come back from the journal bit for bit.
    cost = Cost(
        input=0.1 + 0.2, output=1 / 3, cache_creation=5e-324, cache_read=1e-7, rate=0.85, total=n * 1.1e-5
    )
    return UsageEvent(
        request_id=f"req-{n:06d}",
        user_id=user_id,
        api_key_id=key_id,
        account_id=None,
        platform="claude-official",
        model="claude-sonnet-4-5",
        upstream_model="claude-sonnet-4-5-20250929",
        path="/claude/v1/messages",
        stream=n % 2 == 0,
        status="success",
        status_code=200,
        usage=usage,
        cost=cost,
        duration_ms=120,
        first_byte_ms=80,
        created_at=datetime(2025, 3, 1, 12, 0, n % 60, 123456, tzinfo=UTC),
        client_ip="127.0.0.1",
        user_agent="test/1 ünïcode",
        flags=["no_usage"] if n % 7 == 0 else [],
        request_headers='{"content-type":"application/json"}',
    )


async def counts(db: Database, key_id: int) -> tuple[int, int, int, int, int]:
    """(request logs, distinct request ids, usage records, daily roll-up count, key counter)."""
    async with db.session() as session:
        logs = await session.scalar(select(func.count()).select_from(RequestLog))
        distinct = await session.scalar(select(func.count(func.distinct(RequestLog.request_id))))
        billed = await session.scalar(select(func.count()).select_from(UsageRecord))
        rolled = await session.scalar(select(func.coalesce(func.sum(DailyUsage.request_count), 0)))
        counter = await session.scalar(select(ApiKey.request_count).where(ApiKey.id == key_id))
    return logs or 0, distinct or 0, billed or 0, rolled or 0, counter or 0


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*" + SEGMENT_SUFFIX)) if directory.is_dir() else []


# A recorder in a child process: records `total` events, commits `commit` of them, then is
# SIGKILLed. With `forget_commits` the segments are not told about the commits: the process died
# after the database commit and before deleting the segment.
CHILD = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from billing.test_journal import make_event
    from aiproxy.billing.journal import Journal
    from aiproxy.billing.recorder import UsageRecorder
    from aiproxy.store.db import Database

    async def main():
        db = Database({url!r})
        journal = Journal(Path({journal!r}))
        recorder = UsageRecorder(db, journal=journal)
        journal.open()  # no background task: this script decides what is committed
        if {forget_commits!r}:
            journal.committed = lambda count: None
        for n in range({total}):
            recorder.record(make_event({user_id}, {key_id}, n))
        while recorder.written < {commit}:
            assert await recorder.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    asyncio.run(main())
    """
)


def run_and_kill(
    db: Database, journal: Path, key: tuple[int, int], *, total: int, commit: int, forget_commits: bool
) -> None:
    code = CHILD.format(
        tests=str(Path(__file__).parents[1]),
        url=db.url,
        journal=str(journal),
        forget_commits=forget_commits,
        total=total,
        commit=commit,
        user_id=key[0],
        key_id=key[1],
    )
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert child.returncode == -9, child.stderr


def test_events_round_trip_exactly() -> None:
    event = make_event(3, 4, 7)
    back = event_from_journal(orjson.loads(orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE)))
    assert back == event
    assert back.cost is not None and event.cost is not None
    assert [v.hex() for v in (back.cost.input, back.cost.output, back.cost.cache_creation)] == [
        v.hex() for v in (event.cost.input, event.cost.output, event.cost.cache_creation)
    ]
    assert back.created_at == event.created_at and back.created_at.tzinfo is not None
    refused = make_event(3, 4, 8)
    refused.usage = refused.cost = None
    refused.account_id = 12
    assert event_from_journal(orjson.loads(orjson.dumps(refused))) == refused
    # A journal written by a version with one more field still replays.
    assert event_from_journal({**orjson.loads(orjson.dumps(event)), "later_field": 1}) == event


async def test_a_killed_recorder_loses_nothing(db: Database, tmp_path: Path) -> None:
    key = await new_key(db)
    journal = tmp_path / "journal"
    total = FLUSH_SIZE + 57
    await asyncio.to_thread(
        run_and_kill, db, journal, key, total=total, commit=FLUSH_SIZE, forget_commits=False
    )
    assert (await counts(db, key[1]))[0] == FLUSH_SIZE  # the rest died with the process's memory
    assert await UsageRecorder(db).recover(journal) == total - FLUSH_SIZE
    assert await counts(db, key[1]) == (total,) * 5
    assert segments(journal) == []


async def test_crash_between_commit_and_segment_deletion_counts_once(db: Database, tmp_path: Path) -> None:
    key = await new_key(db)
    journal = tmp_path / "journal"
    total = 2 * FLUSH_SIZE + 30
    await asyncio.to_thread(
        run_and_kill, db, journal, key, total=total, commit=2 * FLUSH_SIZE, forget_commits=True
    )
    assert sum(p.read_bytes().count(b"\n") for p in segments(journal)) == total  # nothing was deleted
    assert await UsageRecorder(db).recover(journal) == 30
    assert await counts(db, key[1]) == (total,) * 5
    assert await UsageRecorder(db).recover(journal) == 0  # and a second start finds nothing


async def test_a_torn_last_line_is_skipped(db: Database, tmp_path: Path) -> None:
    user_id, key_id = await new_key(db)
    journal = tmp_path / "journal"
    journal.mkdir()
    lines = [orjson.dumps(make_event(user_id, key_id, n), option=orjson.OPT_APPEND_NEWLINE) for n in range(4)]
    torn = lines[3][: len(lines[3]) // 2]  # the power went out in the middle of this write
    (journal / f"999999-dead0000-00000001{SEGMENT_SUFFIX}").write_bytes(b"".join(lines[:3]) + torn)
    assert await UsageRecorder(db).recover(journal) == 3
    async with db.session() as session:
        ids = list(await session.scalars(select(RequestLog.request_id).order_by(RequestLog.request_id)))
        replayed_cost = await session.scalar(select(UsageRecord.cost).where(UsageRecord.request_id == ids[2]))
        created = await session.scalar(select(RequestLog.created_at).where(RequestLog.request_id == ids[2]))
    assert ids == ["req-000000", "req-000001", "req-000002"]
    assert replayed_cost == make_event(user_id, key_id, 2).cost.total  # type: ignore[union-attr]
    assert created == make_event(user_id, key_id, 2).created_at  # the original time, not the replay's
    assert segments(journal) == []


async def test_a_torn_line_in_a_reserved_tail_is_skipped(db: Database, tmp_path: Path) -> None:
    """A killed process leaves its segment as it was mapped: the lines, maybe part of one more, then
    the zero bytes it had reserved."""
    user_id, key_id = await new_key(db)
    journal = tmp_path / "journal"
    journal.mkdir()
    lines = [orjson.dumps(make_event(user_id, key_id, n), option=orjson.OPT_APPEND_NEWLINE) for n in range(3)]
    clean = journal / f"999999-dead0000-00000001{SEGMENT_SUFFIX}"
    clean.write_bytes(lines[0] + b"\0" * 8192)
    torn = journal / f"999999-dead0000-00000002{SEGMENT_SUFFIX}"
    torn.write_bytes(lines[1] + lines[2][:40] + b"\0" * 8192)
    recorder = UsageRecorder(db)
    assert await recorder.recover(journal) == 2
    async with db.session() as session:
        ids = list(await session.scalars(select(RequestLog.request_id).order_by(RequestLog.request_id)))
    assert ids == ["req-000000", "req-000001"]
    assert segments(journal) == []


async def test_a_segment_grows_past_its_reservation_and_is_trimmed_when_sealed(
    db: Database, tmp_path: Path
) -> None:
    user_id, key_id = await new_key(db)
    directory = tmp_path / "journal"
    journal = Journal(directory)
    journal.open()
    events = [make_event(user_id, key_id, n) for n in range(600)]  # ~0.5 MB: past the first reservation
    for event in events:
        journal.append(event)
    (first,) = segments(directory)
    reserved = first.stat().st_size
    written = b"".join(orjson.dumps(e, option=orjson.OPT_APPEND_NEWLINE) for e in events)
    assert reserved > len(written) > 256 * 1024
    assert first.read_bytes()[: len(written)] == written  # in the file at once: no write pending
    journal.rotate()
    assert first.stat().st_size == len(written)  # sealed: cut to its lines
    second = [p for p in segments(directory) if p != first]
    assert len(second) == 1 and second[0].stat().st_size >= 2 * len(written)  # sized on the last turn
    assert journal.close() == 600  # nothing committed: kept for the next start, the empty one deleted
    assert segments(directory) == [first]
    assert await UsageRecorder(db).recover(directory) == 600
    assert (await counts(db, key_id))[:2] == (600, 600)


async def test_a_live_processs_segments_are_left_alone(db: Database, tmp_path: Path) -> None:
    user_id, key_id = await new_key(db)
    directory = tmp_path / "journal"
    live = Journal(directory)
    live.open()
    for n in range(5):
        live.append(make_event(user_id, key_id, n))
    # Another process (or worker) starting up: a second open file description never gets the lock.
    assert await UsageRecorder(db).recover(directory) == 0
    assert len(segments(directory)) == 1
    assert live.close() == 5  # stopped with nothing committed: the segment is kept, unlocked
    assert await UsageRecorder(db).recover(directory) == 5
    assert (await counts(db, key_id))[0] == 5


async def test_segments_are_deleted_once_committed(db: Database, tmp_path: Path) -> None:
    user_id, key_id = await new_key(db)
    directory = tmp_path / "journal"
    recorder = UsageRecorder(db, flush_interval=0.01, journal=Journal(directory))
    recorder.start()
    most = 0
    for burst in range(40):  # steady traffic over many recorder turns
        for n in range(25):
            recorder.record(make_event(user_id, key_id, burst * 25 + n))
        await asyncio.sleep(0.02)
        most = max(most, len(segments(directory)))
    for _ in range(200):
        if recorder.written == 1000:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.05)  # one more turn retires the last segment that had lines
    assert most <= 4, most  # without deletion there would be one per turn (dozens)
    assert len(segments(directory)) <= 1
    assert all(not p.read_bytes().strip(b"\0") for p in segments(directory))  # reserved, no lines
    await recorder.stop()
    assert list(directory.iterdir()) == []  # a graceful stop leaves nothing behind
    assert (await counts(db, key_id))[0] == 1000


async def test_a_stop_without_database_keeps_the_events_for_the_next_start(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user_id, key_id = await new_key(db)
    directory = tmp_path / "journal"
    recorder = UsageRecorder(db, flush_interval=60, journal=Journal(directory))
    recorder.start()
    for n in range(30):
        recorder.record(make_event(user_id, key_id, n))

    async def unreachable(*_: object) -> None:
        raise ConnectionError("database unreachable")

    monkeypatch.setattr(recorder, "_write", unreachable)
    await recorder.stop()
    assert len(segments(directory)) == 1
    assert await UsageRecorder(db).recover(directory) == 30
    assert (await counts(db, key_id))[:2] == (30, 30)


async def test_fsync_runs_once_per_turn_off_the_loop(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user_id, key_id = await new_key(db)
    journal = Journal(tmp_path / "journal")
    journal.open()
    threads: list[bool] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        threads.append(_in_loop_thread())
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    for n in range(3):
        journal.append(make_event(user_id, key_id, n))
    journal.rotate()
    await journal.sync()
    assert threads and not any(threads)  # segment and directory, never on the event loop
    threads.clear()
    await journal.sync()
    assert threads == []  # nothing new: nothing to sync
    journal.committed(3)
    assert journal.close() == 0


def _in_loop_thread() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
