"""The usage recorder: every finished request becomes rows, written in batches off the hot path.

`record()` appends the event to the write-ahead journal (journal.py: one line copied into a mapped file)
and to an in-memory queue. A background task writes the queue every quarter second by default
(or sooner when it grows) in one transaction per batch: request logs, usage records, the daily
roll-up (upserted) and the running counters of keys, accounts and packages (usage_rows.py). A
failed write keeps its batch for the next try; `stop()` writes everything left, so a graceful
shutdown loses nothing.

A killed process loses nothing either: at the next start `recover()` replays the journal
segments of processes that are gone, skipping events whose request log is already written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select

from ..store.db import Database
from ..store.models import RequestLog
from .journal import Journal, Orphan, orphans
from .usage_event import UsageEvent, ascii_only, defanged, event_from_journal
from .usage_rows import write_batch

if TYPE_CHECKING:
    from ..observe.metrics import Metrics

log = logging.getLogger(__name__)

# Events per transaction: enough to amortise the commit, the session and the counters' updates (one
# per key and account of the batch), few enough that no commit holds a core long in one piece. SQLite
# commits in the relay's own process (aiosqlite's thread, on the event loop's core), PostgreSQL in
# its server: 600 there cost 4-5% less relay CPU than 200 with the same tail, 2,000 cost 6% less
# but 12-16% more p99 at c=16 (docs/performance.md).
FLUSH_SIZE = 200
FLUSH_SIZE_SERVER = 600
# Failed writes of one batch before its events are tried one by one (see `_isolate`).
ISOLATE_AFTER = 3


class UsageRecorder:
    def __init__(self, db: Database, *, flush_interval: float = 0.25, journal: Journal | None = None) -> None:
        self._db = db
        self._flush_interval = flush_interval
        self._flush_size = FLUSH_SIZE if db.is_sqlite else FLUSH_SIZE_SERVER
        self._journal = journal
        self._pending: deque[UsageEvent] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # The journal counts commits oldest first: batches must commit in the order they were taken.
        self._flushing = asyncio.Lock()
        self._failures = 0  # consecutive failed writes of the batch at the queue's head
        self.written = 0
        self.defanged = 0  # events stored without values the database refused (see `_isolate`)
        self._metrics: Metrics | None = None

    def report_to(self, metrics: Metrics) -> None:
        """Queue depth, rows written and failed writes go to these metrics from now on."""
        self._metrics = metrics

    def record(self, event: UsageEvent) -> None:
        if self._journal is not None:
            self._journal.append(event)
        self._pending.append(event)
        if len(self._pending) >= self._flush_size:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        if self._task is None:
            if self._journal is not None:
                self._journal.open()
            self._task = asyncio.create_task(self._run(), name="usage-recorder")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for _ in range(3):  # last chances when a write fails on the way out
            if await self._drain(everything=True):
                break
        if self._journal is not None:
            kept = self._journal.close()
            if kept:
                log.error("%d unwritten usage events stay in the journal for the next start", kept)
        elif self._pending:
            log.error("usage recorder stopped with %d unwritten events", len(self._pending))

    async def _run(self) -> None:
        journal = self._journal
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._flush_interval)
            self._wake.clear()
            syncing = None
            if journal is not None:
                # New events go to a fresh segment, so this turn's commits can free the old one.
                # The fsync (what was journaled until now then survives a power failure) runs in a
                # thread meanwhile: a slow disk never holds back the database writes.
                journal.rotate()
                syncing = asyncio.create_task(journal.sync())
            ok = await self._drain(everything=False)
            if self._metrics is not None:
                self._metrics.recorder_queue.set(len(self._pending))
            if syncing is not None:
                await syncing
            if not ok:
                await asyncio.sleep(1.0)  # the database is unhappy: back off, the rows stay queued

    async def _drain(self, *, everything: bool) -> bool:
        """Write pending rows batch by batch; False when a write failed.

        On a timer wake-up, one batch is written whatever its size, then only full batches: rows
        arriving meanwhile wait for the next turn instead of each costing a tiny transaction.
        """
        first = True
        while self._pending and (first or everything or len(self._pending) >= self._flush_size):
            first = False
            if not await self.flush():
                return False
            await asyncio.sleep(0)  # let waiting requests run between batches
        return True

    async def flush(self) -> bool:
        async with self._flushing:
            batch: list[UsageEvent] = []
            while self._pending and len(batch) < self._flush_size:
                batch.append(self._pending.popleft())
            if not batch:
                return True
            try:
                await self._write(batch)
                done = len(batch)
            except Exception:
                self._failures += 1
                if self._metrics is not None:
                    self._metrics.recorder_errors.inc()
                done = await self._isolate(batch) if self._failures >= ISOLATE_AFTER else 0
                if done < len(batch):
                    log.exception("writing %d usage events failed; will retry", len(batch) - done)
                    self._pending.extendleft(reversed(batch[done:]))
            self.written += done
            if self._metrics is not None and done:
                self._metrics.recorder_written.inc(done)
            if self._journal is not None and done:
                self._journal.committed(done)  # always the oldest ones: batches are written in order
            if done < len(batch):
                return False
            self._failures = 0
            return True

    async def _isolate(self, batch: list[UsageEvent]) -> int:
        """A batch that keeps failing, one event at a time; how many at its head are now written.

        An event the database refuses on its own is written again without what it can refuse
        (free text cleaned to ASCII, numbers clamped): its tokens and cost still count, and one
        odd request cannot hold back every row after it. When even that fails the database
        itself is refusing, and the rest of the batch waits as before.
        """
        done = 0
        for event in batch:
            if not await self._write_alone(event):
                if not await self._write_alone(defanged(event)):
                    break
                self.defanged += 1
                log.error(
                    "usage event %s (%s %s) held values the database refuses; stored without them",
                    event.request_id,
                    event.method,
                    ascii_only(event.path, 255),
                )
            done += 1
        return done

    async def _write_alone(self, event: UsageEvent) -> bool:
        try:
            await self._write([event])
        except Exception:
            return False
        return True

    # -- replay after a crash ------------------------------------------------------------------

    async def recover(self, directory: Path) -> int:
        """Write the journaled events of processes that died; returns how many were new.

        Runs at start-up, before serving (and whether or not this process journals itself, so
        switching the journal off never strands a crashed run's events). A segment is deleted
        once its events are committed; one that cannot be written stays for the next start.
        """
        replayed = skipped = unreadable = segments = 0
        for orphan in orphans(directory):
            try:
                new, old = await self._replay(orphan)
            except Exception:
                log.exception("replaying usage journal %s failed; it is kept for the next start", orphan.path)
                orphan.release()
                continue
            orphan.remove()
            segments += 1
            replayed += new
            skipped += old
            unreadable += orphan.unreadable
        if segments:
            log.warning(
                "usage journal: replayed %d events from %d segments left by stopped processes "
                "(%d were already written, %d unreadable lines skipped)",
                replayed,
                segments,
                skipped,
                unreadable,
            )
        return replayed

    async def _replay(self, orphan: Orphan) -> tuple[int, int]:
        new = old = 0
        batch: list[UsageEvent] = []
        for record in orphan.records():
            try:
                batch.append(event_from_journal(record))
            except (KeyError, TypeError, ValueError):
                orphan.unreadable += 1
                continue
            if len(batch) >= FLUSH_SIZE:
                written = await self._write_unrecorded(batch)
                new, old, batch = new + written, old + len(batch) - written, []
        if batch:
            written = await self._write_unrecorded(batch)
            new, old = new + written, old + len(batch) - written
        return new, old

    async def _write_unrecorded(self, batch: list[UsageEvent]) -> int:
        """Write the events of `batch` that have no request log yet, in one transaction.

        A process can die between committing a batch and deleting its segment: those events
        already have their rows (all of them, the batch being one transaction), and writing them
        again would count them twice.
        """
        async with self._db.transaction() as session:
            ids = {e.request_id for e in batch}
            known = set(
                await session.scalars(select(RequestLog.request_id).where(RequestLog.request_id.in_(ids)))
            )
            fresh: list[UsageEvent] = []
            for event in batch:
                if event.request_id not in known:
                    known.add(event.request_id)  # a line journaled twice is still one request
                    fresh.append(event)
            if fresh:
                await write_batch(session, fresh)
        return len(fresh)

    async def _write(self, batch: list[UsageEvent]) -> None:
        async with self._db.transaction() as session:
            await write_batch(session, batch)
