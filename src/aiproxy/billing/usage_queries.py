"""Read-side usage aggregates, shared by the user and admin views.

Two sources hold the same figures: `usage_records` (one row per billed request) and the
`daily_usage` roll-up (one row per UTC day, user, key and model). Every aggregate here is
computed in the database with GROUP BY; `rollup=True` answers from `daily_usage` instead of
`usage_records`, which is cheaper for long ranges and gives the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Date, case, distinct, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from ..store.models import ApiKey, DailyUsage, UsageRecord, User

COST_DECIMALS = 10  # sub-micro-dollar: a single cheap request costs ~1e-6 USD
TOKEN_KINDS = ("input_tokens", "output_tokens", "cache_creation_tokens", "cache_read_tokens", "total_tokens")


class utc_day(FunctionElement[date]):
    """The UTC calendar day of a timestamp column, identical on SQLite and PostgreSQL."""

    type = Date()
    inherit_cache = True
    name = "utc_day"


@compiles(utc_day, "sqlite")
def _utc_day_sqlite(element: utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    # Timestamps are stored as UTC text ("YYYY-MM-DD HH:MM:SS…"), so date() is the UTC day.
    return f"date({compiler.process(element.clauses, **kw)})"


@compiles(utc_day)
def _utc_day_default(element: utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    # A plain ::date would follow the session TimeZone; pin the conversion to UTC.
    return f"CAST(({compiler.process(element.clauses, **kw)} AT TIME ZONE 'UTC') AS DATE)"


@dataclass(frozen=True, slots=True)
class UsageScope:
    """Which usage to aggregate; `start`/`end` are inclusive UTC days."""

    user_id: int | None = None
    api_key_id: int | None = None
    model: str | None = None
    start: date | None = None
    end: date | None = None


def utc_today() -> date:
    return datetime.now(UTC).date()


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def time_bounds(
    column: ColumnElement[datetime], start: date | None, end: date | None
) -> list[ColumnElement[bool]]:
    """`column` within the UTC days [start, end]; half-open so the index range is exact."""
    conditions: list[ColumnElement[bool]] = []
    if start is not None:
        conditions.append(column >= _midnight(start))
    if end is not None and end < date.max:  # date.max + 1 day would overflow: no upper bound then
        conditions.append(column < _midnight(end + timedelta(days=1)))
    return conditions


def money(value: Any) -> float:
    """Costs are summed as floats in storage; only the output is rounded, to drop float noise."""
    return round(float(value or 0.0), COST_DECIMALS)


def _conditions(scope: UsageScope, *, rollup: bool) -> list[ColumnElement[bool]]:
    table: Any = DailyUsage if rollup else UsageRecord
    conditions: list[ColumnElement[bool]] = []
    if scope.user_id is not None:
        conditions.append(table.user_id == scope.user_id)
    if scope.api_key_id is not None:
        conditions.append(table.api_key_id == scope.api_key_id)
    if scope.model:
        conditions.append(table.model == scope.model)
    if rollup:
        if scope.start is not None:
            conditions.append(DailyUsage.day >= scope.start)
        if scope.end is not None:
            conditions.append(DailyUsage.day <= scope.end)
    else:
        conditions += time_bounds(UsageRecord.created_at, scope.start, scope.end)
    return conditions


def _sums(*, rollup: bool, where: ColumnElement[bool] | None = None, prefix: str = "") -> list[Any]:
    """SUM columns for cost, every token kind and the request count, optionally conditional."""
    table: Any = DailyUsage if rollup else UsageRecord

    def total(column: Any, zero: Any) -> Any:
        value = column if where is None else case((where, column), else_=zero)
        return func.coalesce(func.sum(value), zero)

    columns = [total(table.cost, 0.0).label(f"{prefix}cost")]
    columns += [total(getattr(table, kind), 0).label(f"{prefix}{kind}") for kind in TOKEN_KINDS]
    # Inline literals: PostgreSQL cannot type a bare bound parameter inside SUM(CASE …).
    requests = DailyUsage.request_count if rollup else literal_column("1")
    columns.append(total(requests, literal_column("0")).label(f"{prefix}request_count"))
    return columns


def _day_column(*, rollup: bool) -> Any:
    return DailyUsage.day if rollup else utc_day(UsageRecord.created_at)


def _totals(row: Any, *, prefix: str = "", cost_key: str = "cost") -> dict[str, Any]:
    mapping = row._mapping
    data: dict[str, Any] = {cost_key: money(mapping[f"{prefix}cost"])}
    data.update({kind: int(mapping[f"{prefix}{kind}"] or 0) for kind in TOKEN_KINDS})
    data["request_count"] = int(mapping[f"{prefix}request_count"] or 0)
    return data


def _brief(row: Any, prefix: str) -> dict[str, Any]:
    totals = _totals(row, prefix=prefix)
    return {"cost": totals["cost"], "tokens": totals["total_tokens"], "requests": totals["request_count"]}


async def _summary(session: AsyncSession, scope: UsageScope, *, rollup: bool) -> dict[str, Any]:
    today = utc_today()
    if rollup:
        is_today: ColumnElement[bool] = DailyUsage.day == today
    else:
        is_today = UsageRecord.created_at >= _midnight(today)
    # One scan: all-time and today's sums side by side (conditional aggregation).
    row = (
        await session.execute(
            select(*_sums(rollup=rollup), *_sums(rollup=rollup, where=is_today, prefix="today_")).where(
                *_conditions(scope, rollup=rollup)
            )
        )
    ).one()
    return {**_totals(row, cost_key="total_cost"), "today": _brief(row, "today_")}


async def usage_summary(
    session: AsyncSession, *, user_id: int | None = None, api_key_id: int | None = None
) -> dict[str, Any]:
    """All-time totals plus today's (UTC) cost, tokens and requests, from `usage_records`."""
    return await _summary(session, UsageScope(user_id=user_id, api_key_id=api_key_id), rollup=False)


async def rollup_summary(
    session: AsyncSession, *, user_id: int | None = None, api_key_id: int | None = None
) -> dict[str, Any]:
    """`usage_summary` answered from the `daily_usage` roll-up (same shape, same numbers)."""
    return await _summary(session, UsageScope(user_id=user_id, api_key_id=api_key_id), rollup=True)


async def usage_totals(session: AsyncSession, scope: UsageScope, *, rollup: bool = False) -> dict[str, Any]:
    """Totals within `scope`: total_cost, each token kind, request_count."""
    row = (
        await session.execute(select(*_sums(rollup=rollup)).where(*_conditions(scope, rollup=rollup)))
    ).one()
    return _totals(row, cost_key="total_cost")


async def daily_series(
    session: AsyncSession, scope: UsageScope, *, rollup: bool = False
) -> list[dict[str, Any]]:
    """One item per UTC day that has usage, oldest first."""
    day = _day_column(rollup=rollup).label("day")
    rows = await session.execute(
        select(day, *_sums(rollup=rollup))
        .where(*_conditions(scope, rollup=rollup))
        .group_by(day)
        .order_by(day)
    )
    return [{"date": _as_date(row.day).isoformat(), **_totals(row)} for row in rows]


def _as_date(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


async def model_breakdown(
    session: AsyncSession, scope: UsageScope, *, rollup: bool = False
) -> list[dict[str, Any]]:
    """Totals per model, most expensive first."""
    table: Any = DailyUsage if rollup else UsageRecord
    sums = _sums(rollup=rollup)
    rows = await session.execute(
        select(table.model, *sums)
        .where(*_conditions(scope, rollup=rollup))
        .group_by(table.model)
        .order_by(sums[0].desc(), table.model)
    )
    return [{"model": row.model, **_totals(row, cost_key="total_cost")} for row in rows]


RECORD_COLUMNS = (
    UsageRecord.id,
    UsageRecord.request_id,
    UsageRecord.api_key_id,
    UsageRecord.model,
    UsageRecord.platform,
    UsageRecord.input_tokens,
    UsageRecord.output_tokens,
    UsageRecord.cache_creation_tokens,
    UsageRecord.cache_read_tokens,
    UsageRecord.total_tokens,
    UsageRecord.cost,
    UsageRecord.created_at,
)


async def list_records(
    session: AsyncSession, scope: UsageScope, *, offset: int, limit: int
) -> tuple[int, list[dict[str, Any]]]:
    """A page of single records, newest first. Leaves out account ids: users must not see them."""
    conditions = _conditions(scope, rollup=False)
    total = await session.scalar(select(func.count()).select_from(UsageRecord).where(*conditions))
    rows = await session.execute(
        select(*RECORD_COLUMNS)
        .where(*conditions)
        .order_by(UsageRecord.created_at.desc(), UsageRecord.id.desc())
        .offset(offset)
        .limit(limit)
    )
    items = [{**row._mapping, "cost": money(row.cost)} for row in rows]
    return int(total or 0), items


async def usage_overview(session: AsyncSession, *, user_id: int) -> dict[str, Any]:
    """Today, this month and all time ({cost, tokens, requests}) plus the user's usable keys."""
    today = utc_today()
    month_start = _midnight(today.replace(day=1))
    row = (
        await session.execute(
            select(
                *_sums(rollup=False),
                *_sums(rollup=False, where=UsageRecord.created_at >= _midnight(today), prefix="today_"),
                *_sums(rollup=False, where=UsageRecord.created_at >= month_start, prefix="month_"),
            ).where(UsageRecord.user_id == user_id)
        )
    ).one()
    now = datetime.now(UTC)
    active_keys = await session.scalar(
        select(func.count())
        .select_from(ApiKey)
        .where(
            ApiKey.user_id == user_id,
            ApiKey.status == "active",
            (ApiKey.expires_at.is_(None)) | (ApiKey.expires_at > now),
        )
    )
    return {
        "today": _brief(row, "today_"),
        "this_month": _brief(row, "month_"),
        "all_time": _brief(row, ""),
        "active_keys": int(active_keys or 0),
    }


async def users_usage(
    session: AsyncSession, scope: UsageScope, *, offset: int, limit: int
) -> tuple[int, list[dict[str, Any]]]:
    """Per-user totals within `scope` (dates, model), most expensive first, with usernames."""
    conditions = _conditions(scope, rollup=False)
    total = await session.scalar(select(func.count(distinct(UsageRecord.user_id))).where(*conditions))
    sums = _sums(rollup=False)
    per_user = select(UsageRecord.user_id, *sums).where(*conditions).group_by(UsageRecord.user_id).subquery()
    rows = await session.execute(
        select(per_user, User.username)
        .outerjoin(User, User.id == per_user.c.user_id)
        .order_by(per_user.c.cost.desc(), per_user.c.user_id)
        .offset(offset)
        .limit(limit)
    )
    items = [
        {"user_id": row.user_id, "username": row.username or "", **_totals(row, cost_key="total_cost")}
        for row in rows
    ]
    return int(total or 0), items
