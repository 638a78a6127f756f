"""One batch of usage events written in one transaction: request logs, usage records, the daily
roll-up, and the running counters of keys, accounts and user packages.

The two big inserts go to the database driver as plain tuples (`exec_driver_sql` with many
parameter sets: asyncpg's pipelined executemany, sqlite3's executemany in aiosqlite's thread).
SQLAlchemy's compiled insert would run its bind processors for every value of every row on the
event loop: ~30 µs per request, and a pause of several milliseconds per batch. Values are
therefore given in the form each driver stores them, as SQLAlchemy would have: timestamps as
UTC datetimes for PostgreSQL and as SQLAlchemy's `YYYY-MM-DD HH:MM:SS.ffffff` text for SQLite (so
range queries compare them as before). The roll-up and the counters are a handful of aggregated
statements per batch and stay with SQLAlchemy.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import and_, case, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from ..store.models import Account, ApiKey, DailyUsage, UserPackage
from ..store.packages import used_up_clause
from .usage_event import LOG_COLUMNS, USAGE_COLUMNS, UsageEvent, column_text

_DAILY_SUMS = (
    "request_count",
    "input_tokens",
    "output_tokens",
    "cache_creation_tokens",
    "cache_read_tokens",
    "total_tokens",
    "cost",
)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _sqlite_stamp(value: datetime) -> str:
    return _utc(value).strftime("%Y-%m-%d %H:%M:%S.%f")


@dataclass(frozen=True, slots=True)
class _Dialect:
    """How one database takes the bulk inserts."""

    insert_logs: str
    insert_usage: str
    stamp: Callable[[datetime], Any]


def _insert(table: str, columns: Sequence[str], placeholder: Callable[[int], str]) -> str:
    values = ", ".join(placeholder(n) for n in range(1, len(columns) + 1))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({values})"


@functools.cache
def _dialect(name: str) -> _Dialect:
    if name == "postgresql":  # asyncpg: numbered parameters, native datetimes
        return _Dialect(
            _insert("request_logs", LOG_COLUMNS, lambda n: f"${n}"),
            _insert("usage_records", USAGE_COLUMNS, lambda n: f"${n}"),
            _utc,
        )
    if name == "sqlite":
        return _Dialect(
            _insert("request_logs", LOG_COLUMNS, lambda _n: "?"),
            _insert("usage_records", USAGE_COLUMNS, lambda _n: "?"),
            _sqlite_stamp,
        )
    raise ValueError(f"no bulk insert for the {name} dialect")


async def write_batch(session: AsyncSession, batch: Sequence[UsageEvent]) -> None:
    """Write `batch` in the session's transaction (the caller commits)."""
    connection = await session.connection()
    dialect = _dialect(connection.dialect.name)
    stamps = [dialect.stamp(event.created_at) for event in batch]
    # Many parameter sets in one call: the executemany of asyncpg, or of sqlite3 in aiosqlite's thread.
    logs = [e.log_values(t) for e, t in zip(batch, stamps, strict=True)]
    await connection.exec_driver_sql(dialect.insert_logs, logs)
    billed = [
        (e, t) for e, t in zip(batch, stamps, strict=True) if e.usage is not None and e.cost is not None
    ]
    if billed:
        await connection.exec_driver_sql(dialect.insert_usage, [e.usage_values(t) for e, t in billed])
        await _upsert_daily(session, _daily_rows([e for e, _ in billed]))
    await _bump_packages(session, batch)
    await _bump_counters(session, batch)


def _daily_rows(billed: list[UsageEvent]) -> list[dict[str, Any]]:
    grouped: dict[tuple[date, int | None, int, str], dict[str, Any]] = {}
    for event in billed:
        usage, cost = event.usage, event.cost
        assert usage is not None and cost is not None
        model = column_text(event.model, 128)  # as stored
        key = (_utc(event.created_at).date(), event.user_id, event.api_key_id or 0, model)
        agg = grouped.get(key)
        if agg is None:
            agg = grouped[key] = {
                "day": key[0],
                "user_id": key[1],
                "api_key_id": key[2],
                "model": key[3],
                "platform": event.platform,
                **dict.fromkeys(_DAILY_SUMS, 0),
            }
            agg["cost"] = 0.0
        agg["request_count"] += 1
        agg["input_tokens"] += usage.input_tokens
        agg["output_tokens"] += usage.output_tokens
        agg["cache_creation_tokens"] += usage.cache_creation_tokens
        agg["cache_read_tokens"] += usage.cache_read_tokens
        agg["total_tokens"] += usage.total
        agg["cost"] += cost.total
    return list(grouped.values())


async def _upsert_daily(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    dialect = session.bind.dialect.name
    stmt = (pg_insert if dialect == "postgresql" else sqlite_insert)(DailyUsage).values(rows)
    table = DailyUsage.__table__
    stmt = stmt.on_conflict_do_update(
        index_elements=["day", "user_id", "api_key_id", "model"],
        set_={name: table.c[name] + stmt.excluded[name] for name in _DAILY_SUMS},
    )
    await session.execute(stmt)


async def _bump_counters(session: AsyncSession, batch: Sequence[UsageEvent]) -> None:
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


async def _bump_packages(session: AsyncSession, batch: Sequence[UsageEvent]) -> None:
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
