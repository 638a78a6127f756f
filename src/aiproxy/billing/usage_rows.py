"""One batch of usage events written in one transaction: request logs, usage records, the daily
roll-up, and the running counters of keys, accounts and user packages.

Every statement goes to the database driver as plain tuples (`exec_driver_sql` with many
parameter sets: asyncpg's pipelined executemany, sqlite3's executemany in aiosqlite's thread): the
inserts, the roll-up's upsert and the counters' updates, one call each per batch. SQLAlchemy's
compiled insert would run its bind processors for every value of every row on the event loop (~30
µs per request, a pause of several milliseconds per batch), and its multi-row upsert and ORM
updates cost ~14 µs per request more (a statement built and compiled per batch). Values are
therefore given in the form each driver stores them, as SQLAlchemy would have: timestamps as UTC
datetimes for PostgreSQL and as SQLAlchemy's `YYYY-MM-DD HH:MM:SS.ffffff` text for SQLite (so
range queries compare them as before), days as dates or `YYYY-MM-DD` text. Package quotas (a few
rows, with the used-up rule shared with the package store) stay with SQLAlchemy.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import BigInteger, Float, Update, and_, bindparam, case, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..store.models import Account, ApiKey, DailyUsage, UserPackage
from ..store.packages import used_up_clause
from .usage_event import LOG_COLUMNS, USAGE_COLUMNS, UsageEvent, column_text

_DAILY_KEY = ("day", "user_id", "api_key_id", "model")  # its unique constraint
_DAILY_SUMS = (
    "request_count",
    "input_tokens",
    "output_tokens",
    "cache_creation_tokens",
    "cache_read_tokens",
    "total_tokens",
    "cost",
)
_DAILY_COLUMNS = (*_DAILY_KEY, "platform", *_DAILY_SUMS)
_COUNTERS = ("used_tokens", "used_cost", "request_count")  # added to; then last_used_at, set
_ROWS_PER_SLICE = 50


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _sqlite_stamp(value: datetime) -> str:
    return _utc(value).strftime("%Y-%m-%d %H:%M:%S.%f")


@dataclass(frozen=True, slots=True)
class _Dialect:
    """How one database takes the batch's statements."""

    insert_logs: str
    insert_usage: str
    upsert_daily: str
    bump_keys: str
    bump_accounts: str
    stamp: Callable[[datetime], Any]
    day: Callable[[date], Any]


def _insert(table: str, columns: Sequence[str], placeholder: Callable[[int], str]) -> str:
    values = ", ".join(placeholder(n) for n in range(1, len(columns) + 1))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({values})"


def _upsert_daily_sql(placeholder: Callable[[int], str]) -> str:
    table = DailyUsage.__tablename__
    added = ", ".join(f"{name} = {table}.{name} + excluded.{name}" for name in _DAILY_SUMS)
    return (
        f"{_insert(table, _DAILY_COLUMNS, placeholder)} "
        f"ON CONFLICT ({', '.join(_DAILY_KEY)}) DO UPDATE SET {added}"
    )


def _bump_sql(table: str, placeholder: Callable[[int], str]) -> str:
    added = ", ".join(f"{name} = {name} + {placeholder(n)}" for n, name in enumerate(_COUNTERS, 1))
    last, ident = placeholder(len(_COUNTERS) + 1), placeholder(len(_COUNTERS) + 2)
    return f"UPDATE {table} SET {added}, last_used_at = {last} WHERE id = {ident}"


def _numbered(n: int) -> str:
    return f"${n}"


def _question_mark(_n: int) -> str:
    return "?"


@functools.cache
def _dialect(name: str) -> _Dialect:
    if name == "postgresql":  # asyncpg: numbered parameters, native dates and datetimes
        mark, stamp, day = _numbered, _utc, lambda value: value
    elif name == "sqlite":
        mark, stamp, day = _question_mark, _sqlite_stamp, date.isoformat
    else:
        raise ValueError(f"no bulk insert for the {name} dialect")
    return _Dialect(
        insert_logs=_insert("request_logs", LOG_COLUMNS, mark),
        insert_usage=_insert("usage_records", USAGE_COLUMNS, mark),
        upsert_daily=_upsert_daily_sql(mark),
        bump_keys=_bump_sql(ApiKey.__tablename__, mark),
        bump_accounts=_bump_sql(Account.__tablename__, mark),
        stamp=stamp,
        day=day,
    )


async def write_batch(session: AsyncSession, batch: Sequence[UsageEvent]) -> None:
    """Write `batch` in the session's transaction (the caller commits)."""
    connection = await session.connection()
    dialect = _dialect(connection.dialect.name)
    stamps: list[Any] = []
    logs: list[tuple[Any, ...]] = []
    # Built a slice at a time, letting waiting requests run in between: a whole batch's rows in one
    # go would hold the event loop for about a millisecond.
    for start in range(0, len(batch), _ROWS_PER_SLICE):
        for event in batch[start : start + _ROWS_PER_SLICE]:
            stamp = dialect.stamp(event.created_at)
            stamps.append(stamp)
            logs.append(event.log_values(stamp))
        if start + _ROWS_PER_SLICE < len(batch):
            await asyncio.sleep(0)
    # Many parameter sets in one call: the executemany of asyncpg, or of sqlite3 in aiosqlite's thread.
    await connection.exec_driver_sql(dialect.insert_logs, logs)
    billed = [
        (e, t) for e, t in zip(batch, stamps, strict=True) if e.usage is not None and e.cost is not None
    ]
    if billed:
        await connection.exec_driver_sql(dialect.insert_usage, [e.usage_values(t) for e, t in billed])
        await connection.exec_driver_sql(dialect.upsert_daily, _daily_rows([e for e, _ in billed], dialect))
    await _bump_packages(session, batch)
    keys, accounts = _counters(batch, dialect)
    if keys:
        await connection.exec_driver_sql(dialect.bump_keys, keys)
    if accounts:
        await connection.exec_driver_sql(dialect.bump_accounts, accounts)


def _daily_rows(billed: list[UsageEvent], dialect: _Dialect) -> list[tuple[Any, ...]]:
    """One row per (day, user, key, model) of the batch, in `_DAILY_COLUMNS` order."""
    grouped: dict[tuple[date, int | None, int, str], list[Any]] = {}
    for event in billed:
        usage, cost = event.usage, event.cost
        assert usage is not None and cost is not None
        model = column_text(event.model, 128)  # as stored
        key = (_utc(event.created_at).date(), event.user_id, event.api_key_id or 0, model)
        sums = grouped.get(key)
        if sums is None:
            sums = grouped[key] = [event.platform, 0, 0, 0, 0, 0, 0, 0.0]
        sums[1] += 1
        sums[2] += usage.input_tokens
        sums[3] += usage.output_tokens
        sums[4] += usage.cache_creation_tokens
        sums[5] += usage.cache_read_tokens
        sums[6] += usage.total
        sums[7] += cost.total
    return [(dialect.day(key[0]), *key[1:], *sums) for key, sums in grouped.items()]


def _counters(batch: Sequence[UsageEvent], dialect: _Dialect) -> tuple[list[tuple], list[tuple]]:
    """What each key and each account of the batch adds up to: rows for `_bump_sql`, by id."""
    keys: dict[int, list[Any]] = {}
    accounts: dict[int, list[Any]] = {}
    for e in batch:
        tokens = e.usage.total if e.usage else 0
        cost = e.cost.total if e.cost else 0.0
        # A key counts what it was served, like the usage views (refusals are only logged);
        # an account counts every request it was given.
        billed = int(e.usage is not None and e.cost is not None)
        at = _utc(e.created_at)  # a naive time is UTC, as stored: comparable with aware ones
        for bucket, ident, requests in ((keys, e.api_key_id, billed), (accounts, e.account_id, 1)):
            if ident is None:
                continue
            agg = bucket.setdefault(ident, [0, 0.0, 0, at])
            agg[0] += tokens
            agg[1] += cost
            agg[2] += requests
            agg[3] = max(agg[3], at)

    def rows(bucket: dict[int, list[Any]]) -> list[tuple]:
        # Sorted ids: concurrent instances take row locks in the same order (no deadlocks).
        return [(*bucket[ident][:3], dialect.stamp(bucket[ident][3]), ident) for ident in sorted(bucket)]

    return rows(keys), rows(accounts)


@functools.cache
def _bump_packages_statement() -> Update:
    """What each user package paid for; one whose quota this uses up becomes `exhausted`.

    Built once, so SQLAlchemy compiles it once; run with one parameter set per package.
    """
    table = UserPackage.__table__
    tokens, cost = bindparam("tokens", type_=BigInteger), bindparam("cost", type_=Float)
    used_up = used_up_clause(tokens=tokens, cost=cost)
    return (
        update(table)
        .where(table.c.id == bindparam("ident"))
        .values(
            used_tokens=table.c.used_tokens + tokens,
            used_cost=table.c.used_cost + cost,
            status=case((and_(table.c.status == "active", used_up), "exhausted"), else_=table.c.status),
        )
    )


async def _bump_packages(session: AsyncSession, batch: Sequence[UsageEvent]) -> None:
    spent: dict[int, list[Any]] = {}
    for e in batch:
        if e.user_package_id is not None and e.usage is not None and e.cost is not None:
            agg = spent.setdefault(e.user_package_id, [0, 0.0])
            agg[0] += e.usage.total
            agg[1] += e.cost.total
    if spent:
        rows = [
            {"ident": ident, "tokens": spent[ident][0], "cost": spent[ident][1]} for ident in sorted(spent)
        ]
        connection = await session.connection()
        await connection.execute(_bump_packages_statement(), rows)
