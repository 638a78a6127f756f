"""One batch of usage events written in one transaction: request logs, usage records, the daily
roll-up, and the running counters of keys, accounts and user packages.

`batch_statements` gives the batch as a few statements with plain tuples as their rows, run as
executemany calls of a few hundred rows (asyncpg's pipelined executemany, or sqlite3's in aiosqlite's
thread): the inserts, the roll-up's upsert, the counters' updates. SQLAlchemy's compiled insert would run
its bind processors for every value of every row on the event loop (~30 µs per request, a pause of
several milliseconds per batch), and its multi-row upsert and ORM updates cost ~14 µs per request
more (a statement built and compiled per batch). Values are therefore given in the form each driver
stores them, as SQLAlchemy would have: timestamps as UTC datetimes for PostgreSQL and as
SQLAlchemy's `YYYY-MM-DD HH:MM:SS.ffffff` text for SQLite (so range queries compare them as
before), days as dates or `YYYY-MM-DD` text. The package update, with the used-up rule shared with
the package store, is compiled by SQLAlchemy once per database.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import BigInteger, Float, Update, and_, bindparam, case, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from ..store.models import Account, ApiKey, DailyUsage, UserPackage
from ..store.models.base import UTCDateTime
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
_ROWS_PER_CALL = 200


def _utc(value: datetime) -> datetime:
    """Aware and in UTC (a naive time is UTC, as stored): comparable with any other."""
    if value.tzinfo is UTC:
        return value
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _same(value: Any) -> Any:
    return value


def _sqlite_stamp(at: datetime) -> str:
    """A UTC time as SQLAlchemy's SQLite DateTime stores it (`isoformat`: strftime costs more)."""
    return at.replace(tzinfo=None).isoformat(" ", "microseconds")


@dataclass(frozen=True, slots=True)
class _Compiled:
    """A SQLAlchemy statement compiled once for one driver: its text, and its parameters in order."""

    statement: str
    order: tuple[str, ...]  # parameter names by position (a name may come twice)
    fixed: dict[str, Any]  # the values SQLAlchemy bound itself: the statement's literals

    @classmethod
    def of(cls, statement: Update, dialect: Any) -> _Compiled:
        compiled = statement.compile(dialect=dialect)
        return cls(str(compiled), tuple(compiled.positiontup or ()), dict(compiled.params))

    def row(self, **values: Any) -> tuple[Any, ...]:
        return tuple(values[name] if name in values else self.fixed[name] for name in self.order)


@dataclass(frozen=True, slots=True)
class _Dialect:
    """How one database takes the batch's statements."""

    insert_logs: str
    insert_usage: str
    upsert_daily: str
    bump_keys: str
    bump_accounts: str
    bump_packages: _Compiled
    stamp: Callable[[datetime], Any]  # of a UTC time (`_utc`)
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
        mark, stamp, day, driver = _numbered, _same, _same, asyncpg.dialect()
    elif name == "sqlite":
        mark, stamp, day, driver = _question_mark, _sqlite_stamp, date.isoformat, sqlite.dialect()
    else:
        raise ValueError(f"no bulk insert for the {name} dialect")
    return _Dialect(
        insert_logs=_insert("request_logs", LOG_COLUMNS, mark),
        insert_usage=_insert("usage_records", USAGE_COLUMNS, mark),
        upsert_daily=_upsert_daily_sql(mark),
        bump_keys=_bump_sql(ApiKey.__tablename__, mark),
        bump_accounts=_bump_sql(Account.__tablename__, mark),
        bump_packages=_Compiled.of(_bump_packages_statement(), driver),
        stamp=stamp,
        day=day,
    )


Statements = list[tuple[str, list[tuple[Any, ...]]]]  # (statement, parameter sets): one executemany each


async def batch_statements(batch: Sequence[UsageEvent], database: str) -> Statements:
    """The statements that write `batch` in one transaction, with their rows, for the `database`
    dialect ("sqlite" or "postgresql"); each runs as executemany calls (`write_batch`)."""
    dialect = _dialect(database)
    logs: list[tuple[Any, ...]] = []
    usage: list[tuple[Any, ...]] = []
    totals = _Totals()
    # One pass, a slice at a time, letting waiting requests run in between: a batch of a quarter
    # second's events built in one go would hold the event loop for milliseconds.
    for start in range(0, len(batch), _ROWS_PER_SLICE):
        for event in batch[start : start + _ROWS_PER_SLICE]:
            at = _utc(event.created_at)
            stamp = dialect.stamp(at)
            logs.append(event.log_values(stamp))
            row = event.usage_values(stamp)  # None when nothing was billed
            if row is not None:
                usage.append(row)
            totals.add(event, at, billed=row is not None)
        if start + _ROWS_PER_SLICE < len(batch):
            await asyncio.sleep(0)
    statements: Statements = [(dialect.insert_logs, logs)]
    if usage:
        statements.append((dialect.insert_usage, usage))
        statements.append((dialect.upsert_daily, totals.daily_rows(dialect)))
    packages = totals.package_rows(dialect)
    if packages:
        statements.append((dialect.bump_packages.statement, packages))
    keys, accounts = totals.counter_rows(dialect)
    if keys:
        statements.append((dialect.bump_keys, keys))
    if accounts:
        statements.append((dialect.bump_accounts, accounts))
    return statements


async def write_batch(session: AsyncSession, batch: Sequence[UsageEvent]) -> None:
    """Write `batch` in the session's transaction (the caller commits)."""
    connection = await session.connection()
    # Many parameter sets in one call: asyncpg's pipelined executemany (which encodes them on the
    # event loop), or sqlite3's in aiosqlite's thread; at most `_ROWS_PER_CALL` at a time, so a large
    # batch never holds the event loop for long in one piece.
    for statement, rows in await batch_statements(batch, connection.dialect.name):
        for start in range(0, len(rows), _ROWS_PER_CALL):
            await connection.exec_driver_sql(statement, rows[start : start + _ROWS_PER_CALL])


class _Totals:
    """What a batch adds up to, gathered event by event: the daily roll-up's sums per (day, user,
    key, model), and what each key, account and user package used."""

    __slots__ = ("_accounts", "_daily", "_keys", "_spent")

    def __init__(self) -> None:
        self._daily: dict[tuple[date, int | None, int, str], list[Any]] = {}
        self._keys: dict[int, list[Any]] = {}
        self._accounts: dict[int, list[Any]] = {}
        self._spent: dict[int, list[Any]] = {}

    def add(self, event: UsageEvent, at: datetime, *, billed: bool) -> None:
        """One event, `at` its time in UTC; `billed`: it has usage and a cost."""
        usage, cost = event.usage, event.cost
        tokens = usage.total if usage else 0
        dollars = cost.total if cost else 0.0
        if billed:
            assert usage is not None
            model = column_text(event.model, 128)  # as stored
            key = (at.date(), event.user_id, event.api_key_id or 0, model)
            sums = self._daily.get(key)
            if sums is None:
                sums = self._daily[key] = [event.platform, 0, 0, 0, 0, 0, 0, 0.0]
            sums[1] += 1
            sums[2] += usage.input_tokens
            sums[3] += usage.output_tokens
            sums[4] += usage.cache_creation_tokens
            sums[5] += usage.cache_read_tokens
            sums[6] += tokens
            sums[7] += dollars
            if event.user_package_id is not None:
                spent = self._spent.setdefault(event.user_package_id, [0, 0.0])
                spent[0] += tokens
                spent[1] += dollars
        # A key counts what it was served, like the usage views (refusals are only logged);
        # an account counts every request it was given.
        for bucket, ident, requests in (
            (self._keys, event.api_key_id, int(billed)),
            (self._accounts, event.account_id, 1),
        ):
            if ident is None:
                continue
            agg = bucket.setdefault(ident, [0, 0.0, 0, at])
            agg[0] += tokens
            agg[1] += dollars
            agg[2] += requests
            agg[3] = max(agg[3], at)

    def daily_rows(self, dialect: _Dialect) -> list[tuple[Any, ...]]:
        """One row per (day, user, key, model), in `_DAILY_COLUMNS` order."""
        return [(dialect.day(key[0]), *key[1:], *sums) for key, sums in self._daily.items()]

    def counter_rows(self, dialect: _Dialect) -> tuple[list[tuple], list[tuple]]:
        """Rows for `_bump_sql`: the keys', then the accounts'."""

        def rows(bucket: dict[int, list[Any]]) -> list[tuple]:
            # Sorted ids: concurrent instances take row locks in the same order (no deadlocks).
            return [(*bucket[ident][:3], dialect.stamp(bucket[ident][3]), ident) for ident in sorted(bucket)]

        return rows(self._keys), rows(self._accounts)

    def package_rows(self, dialect: _Dialect) -> list[tuple[Any, ...]]:
        """What each user package paid for: rows for the packages statement, by id."""
        if not self._spent:
            return []
        compiled = dialect.bump_packages
        now = dialect.stamp(datetime.now(UTC))  # its `updated_at`, which SQLAlchemy would have set
        return [
            compiled.row(tokens=tokens, cost=cost, ident=ident, stamp=now)
            for ident, (tokens, cost) in sorted(self._spent.items())  # sorted: row locks in one order
        ]


def _bump_packages_statement() -> Update:
    """What each user package paid for; one whose quota this uses up becomes `exhausted`. Compiled
    once per database (`_dialect`), with the used-up rule the package store uses."""
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
            updated_at=bindparam("stamp", type_=UTCDateTime()),
        )
    )
