"""The usage recorder: every finished request becomes rows, written in batches off the hot path.

`record()` appends the event to the write-ahead journal (journal.py: one line, one `os.write`)
and to an in-memory queue. A background task writes the queue every quarter second by default
(or sooner when it grows) in one transaction per batch: request logs, usage records, the daily
roll-up (upserted) and the running counters of keys and accounts. A failed write keeps its batch
for the next try; `stop()` writes everything left, so a graceful shutdown loses nothing.

A killed process loses nothing either: at the next start `recover()` replays the journal
segments of processes that are gone, skipping events whose request log is already written.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
from collections import deque
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, case, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from ..store.db import Database
from ..store.models import Account, ApiKey, DailyUsage, RequestLog, UsageRecord, UserPackage
from ..store.packages import used_up_clause
from .journal import Journal, Orphan, orphans
from .pricing import Cost, Usage

if TYPE_CHECKING:
    from ..observe.metrics import Metrics

log = logging.getLogger(__name__)

# Rows per transaction. Turning rows into statement parameters runs on the event loop, so
# modest batches keep each pause short (tail latency) while still amortising the commit.
FLUSH_SIZE = 200
# Failed writes of one batch before its events are tried one by one (see `_isolate`).
ISOLATE_AFTER = 3


@dataclass(slots=True)
class UsageEvent:
    request_id: str
    user_id: int | None  # None: refused before the key was known
    api_key_id: int | None
    account_id: int | None
    platform: str
    model: str
    upstream_model: str
    path: str
    stream: bool
    status: str
    status_code: int
    usage: Usage | None
    cost: Cost | None
    duration_ms: int
    first_byte_ms: int
    created_at: datetime
    method: str = "POST"
    retries: int = 0
    client_ip: str = ""
    user_agent: str = ""
    session_hash: str = ""
    flags: list[str] = field(default_factory=list)
    error_message: str = ""
    request_headers: str = ""
    request_body: str = ""
    user_package_id: int | None = None  # the user package that paid for it
    client_type: str = ""  # the client type the client filter identified ("" when not checked)

    def _shared(self, usage: Usage) -> dict[str, Any]:
        """Columns request_logs and usage_records have in common."""
        return {
            "request_id": self.request_id,
            "user_id": self.user_id,
            "api_key_id": self.api_key_id,
            "account_id": self.account_id,
            "platform": self.platform,
            "model": _text(self.model, 128),
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cache_creation_tokens": usage.cache_creation_tokens,
            "cache_read_tokens": usage.cache_read_tokens,
            "total_tokens": usage.total,
            "created_at": self.created_at,
        }

    def log_row(self) -> dict[str, Any]:
        row = self._shared(self.usage or Usage())
        row.update(
            upstream_model=_text(self.upstream_model, 128),
            method=self.method,
            path=_text(self.path, 255),
            stream=self.stream,
            status=self.status,
            status_code=self.status_code,
            cost=self.cost.total if self.cost else 0.0,
            duration_ms=self.duration_ms,
            first_byte_ms=self.first_byte_ms,
            retries=self.retries,
            client_ip=self.client_ip[:64],
            user_agent=_text(self.user_agent, 512),
            client_type=self.client_type[:64],
            session_hash=self.session_hash,
            flags=",".join(self.flags),
            error_message=_text(self.error_message, 4000),
            request_headers=_text(self.request_headers, 1 << 20),
            request_body=_text(self.request_body, 1 << 24),
            response_body="",
        )
        return row

    def usage_row(self) -> dict[str, Any] | None:
        if self.usage is None or self.cost is None:
            return None
        cost = self.cost
        row = self._shared(self.usage)
        row.update(
            input_cost=cost.input,
            output_cost=cost.output,
            cache_creation_cost=cost.cache_creation,
            cache_read_cost=cost.cache_read,
            price_rate=cost.rate,
            cost=cost.total,
            user_package_id=self.user_package_id,
        )
        return row


def _text(value: str, limit: int) -> str:
    """A client-supplied string as a column takes it: cut to the column, without NUL characters
    (PostgreSQL refuses them in text, and one refused row would hold back every row after it)."""
    value = value[:limit]
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


_TEXT_FIELDS = ("model", "upstream_model", "path", "client_ip", "user_agent", "error_message", "session_hash")
_COUNT_FIELDS = ("status_code", "duration_ms", "first_byte_ms", "retries")
_BIG = 2**31 - 1


def _ascii(value: str, limit: int) -> str:
    return value[:limit].encode("ascii", "replace").decode("ascii")


def _clamp(value: int) -> int:
    return max(0, min(int(value), _BIG))


def _defanged(event: UsageEvent) -> UsageEvent:
    """The event with nothing a database could refuse: ASCII text, counts in range, finite costs."""
    changes: dict[str, Any] = {name: _ascii(getattr(event, name), 4000) for name in _TEXT_FIELDS}
    changes.update({name: _clamp(getattr(event, name)) for name in _COUNT_FIELDS})
    changes.update(flags=[_ascii(flag, 32) for flag in event.flags], request_headers="{}", request_body="")
    if event.usage is not None:
        changes["usage"] = Usage(*(_clamp(value) for value in dataclasses.astuple(event.usage)))
    if event.cost is not None:
        changes["cost"] = Cost(
            *(value if math.isfinite(value) else 0.0 for value in dataclasses.astuple(event.cost))
        )
    return dataclasses.replace(event, **changes)


def _build(cls: Any, data: dict[str, Any]) -> Any:
    # Unknown keys are dropped: a journal written by another version must still replay.
    fields = cls.__dataclass_fields__
    return cls(**{name: value for name, value in data.items() if name in fields})


def event_from_journal(data: dict[str, Any]) -> UsageEvent:
    """The inverse of `orjson.dumps(event)`: nested dataclasses and the datetime restored.

    orjson writes floats in their shortest round-tripping form, so costs come back bit for bit.
    """
    data = dict(data)
    if data.get("usage") is not None:
        data["usage"] = _build(Usage, data["usage"])
    if data.get("cost") is not None:
        data["cost"] = _build(Cost, data["cost"])
    data["created_at"] = datetime.fromisoformat(data["created_at"])
    return _build(UsageEvent, data)


_DAILY_SUMS = (
    "request_count",
    "input_tokens",
    "output_tokens",
    "cache_creation_tokens",
    "cache_read_tokens",
    "total_tokens",
    "cost",
)


def _daily_rows(usage_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    grouped: dict[tuple[date, int, int, str], dict[str, Any]] = {}
    for row in usage_rows:
        key = (row["created_at"].date(), row["user_id"], row["api_key_id"] or 0, row["model"])
        agg = grouped.get(key)
        if agg is None:
            agg = grouped[key] = {
                "day": key[0],
                "user_id": key[1],
                "api_key_id": key[2],
                "model": key[3],
                "platform": row["platform"],
                **dict.fromkeys(_DAILY_SUMS, 0),
            }
            agg["cost"] = 0.0
        agg["request_count"] += 1
        for name in _DAILY_SUMS[1:]:
            agg[name] += row[name]
    return list(grouped.values())


class UsageRecorder:
    def __init__(self, db: Database, *, flush_interval: float = 0.25, journal: Journal | None = None) -> None:
        self._db = db
        self._flush_interval = flush_interval
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
        if len(self._pending) >= FLUSH_SIZE:
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
        while self._pending and (first or everything or len(self._pending) >= FLUSH_SIZE):
            first = False
            if not await self.flush():
                return False
            await asyncio.sleep(0)  # let waiting requests run between batches
        return True

    async def flush(self) -> bool:
        async with self._flushing:
            batch: list[UsageEvent] = []
            while self._pending and len(batch) < FLUSH_SIZE:
                batch.append(self._pending.popleft())
            if not batch:
                return True
            try:
                async with self._db.transaction() as session:
                    await self._write(session, batch)
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
                if not await self._write_alone(_defanged(event)):
                    break
                self.defanged += 1
                log.error(
                    "usage event %s (%s %s) held values the database refuses; stored without them",
                    event.request_id,
                    event.method,
                    _ascii(event.path, 255),
                )
            done += 1
        return done

    async def _write_alone(self, event: UsageEvent) -> bool:
        try:
            async with self._db.transaction() as session:
                await self._write(session, [event])
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
                await self._write(session, fresh)
        return len(fresh)

    async def _write(self, session: AsyncSession, batch: list[UsageEvent]) -> None:
        # Core inserts (executemany): the ORM's bulk path costs several times more per row.
        await session.execute(insert(RequestLog.__table__), [e.log_row() for e in batch])
        usage_rows = [row for e in batch if (row := e.usage_row()) is not None]
        if usage_rows:
            await session.execute(insert(UsageRecord.__table__), usage_rows)
            await self._upsert_daily(session, _daily_rows(usage_rows))
        await self._bump_counters(session, batch)

    async def _upsert_daily(self, session: AsyncSession, rows: list[dict[str, Any]]) -> None:
        dialect = session.bind.dialect.name
        stmt = (pg_insert if dialect == "postgresql" else sqlite_insert)(DailyUsage).values(rows)
        table = DailyUsage.__table__
        stmt = stmt.on_conflict_do_update(
            index_elements=["day", "user_id", "api_key_id", "model"],
            set_={name: table.c[name] + stmt.excluded[name] for name in _DAILY_SUMS},
        )
        await session.execute(stmt)

    async def _bump_counters(self, session: AsyncSession, batch: list[UsageEvent]) -> None:
        keys: dict[int, list[Any]] = {}
        accounts: dict[int, list[Any]] = {}
        for e in batch:
            tokens = e.usage.total if e.usage else 0
            cost = e.cost.total if e.cost else 0.0
            # A key counts what it was served, like the usage views (refusals are only logged);
            # an account counts every request it was given.
            billed = int(e.usage is not None and e.cost is not None)
            for bucket, ident, requests in ((keys, e.api_key_id, billed), (accounts, e.account_id, 1)):
                if ident is None:
                    continue
                agg = bucket.setdefault(ident, [0, 0.0, 0, e.created_at])
                agg[0] += tokens
                agg[1] += cost
                agg[2] += requests
                agg[3] = max(agg[3], e.created_at)
        await self._bump_packages(session, batch)
        # Sorted ids: concurrent instances take row locks in the same order (no deadlocks).
        for model, bucket in ((ApiKey, keys), (Account, accounts)):
            for ident in sorted(bucket):
                tokens, cost, count, last = bucket[ident]
                await session.execute(
                    update(model)
                    .where(model.id == ident)
                    .values(
                        used_tokens=model.used_tokens + tokens,
                        used_cost=model.used_cost + cost,
                        request_count=model.request_count + count,
                        last_used_at=last,
                    )
                    .execution_options(synchronize_session=False)
                )

    async def _bump_packages(self, session: AsyncSession, batch: list[UsageEvent]) -> None:
        """What each user package paid for; one whose quota this uses up becomes `exhausted`."""
        spent: dict[int, list[Any]] = {}
        for e in batch:
            if e.user_package_id is not None and e.usage is not None and e.cost is not None:
                agg = spent.setdefault(e.user_package_id, [0, 0.0])
                agg[0] += e.usage.total
                agg[1] += e.cost.total
        table = UserPackage
        for ident in sorted(spent):
            tokens, cost = spent[ident]
            used_up = used_up_clause(tokens=tokens, cost=cost)
            await session.execute(
                update(table)
                .where(table.id == ident)
                .values(
                    used_tokens=table.used_tokens + tokens,
                    used_cost=table.used_cost + cost,
                    status=case((and_(table.status == "active", used_up), "exhausted"), else_=table.status),
                )
                .execution_options(synchronize_session=False)
            )
