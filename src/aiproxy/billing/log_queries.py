"""Read-side queries over `request_logs` for the admin console: lists, totals, account load."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import case, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from ..store.models import Account, RequestLog, User
from .usage_queries import TOKEN_KINDS, money, time_bounds

SUCCESS = "success"
# Kept out of list pages: they can be large, and only the detail view needs them.
BODY_COLUMNS = frozenset({"request_headers", "request_body", "response_body"})
# The id first, then the table's own order: reads naturally in the JSON.
ALL_COLUMNS = (RequestLog.__table__.c.id, *(c for c in RequestLog.__table__.columns if c.name != "id"))
LIST_COLUMNS = tuple(c for c in ALL_COLUMNS if c.name not in BODY_COLUMNS)


@dataclass(frozen=True, slots=True)
class LogFilter:
    """Filters of the log list and summary; `start`/`end` are inclusive UTC days."""

    user_id: int | None = None
    api_key_id: int | None = None
    account_id: int | None = None
    model: str | None = None
    platform: str | None = None
    status: str | None = None
    start: date | None = None
    end: date | None = None


def log_conditions(f: LogFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    for column, value in (
        (RequestLog.user_id, f.user_id),
        (RequestLog.api_key_id, f.api_key_id),
        (RequestLog.account_id, f.account_id),
    ):
        if value is not None:
            conditions.append(column == value)
    for column, text in (
        (RequestLog.model, f.model),
        (RequestLog.platform, f.platform),
        (RequestLog.status, f.status),
    ):
        if text:
            conditions.append(column == text)
    return conditions + time_bounds(RequestLog.created_at, f.start, f.end)


def _log_item(row: Any) -> dict[str, Any]:
    item = dict(row._mapping)
    item["cost"] = money(item["cost"])
    item["username"] = item.get("username") or ""
    return item


async def list_logs(
    session: AsyncSession, f: LogFilter, *, offset: int, limit: int
) -> tuple[int, list[dict[str, Any]]]:
    """A page of logs, newest first, with the user's name (logs outlive deleted users: "" then)."""
    conditions = log_conditions(f)
    total = await session.scalar(select(func.count()).select_from(RequestLog).where(*conditions))
    rows = await session.execute(
        select(*LIST_COLUMNS, User.username)
        .outerjoin(User, User.id == RequestLog.user_id)
        .where(*conditions)
        .order_by(RequestLog.created_at.desc(), RequestLog.id.desc())
        .offset(offset)
        .limit(limit)
    )
    return int(total or 0), [_log_item(row) for row in rows]


async def get_log(session: AsyncSession, log_id: int) -> dict[str, Any] | None:
    """One log with its headers and bodies."""
    row = (
        await session.execute(
            select(*ALL_COLUMNS, User.username)
            .outerjoin(User, User.id == RequestLog.user_id)
            .where(RequestLog.id == log_id)
        )
    ).first()
    return None if row is None else _log_item(row)


def _is_error() -> ColumnElement[bool]:
    return RequestLog.status != SUCCESS


def _load_columns() -> list[Any]:
    """Counts, sums and averages shared by the summary and the account load."""
    one, zero = literal_column("1"), literal_column("0")
    columns = [
        func.count().label("requests"),
        func.coalesce(func.sum(case((RequestLog.status == SUCCESS, one), else_=zero)), 0).label("success"),
        func.coalesce(func.sum(case((_is_error(), one), else_=zero)), 0).label("errors"),
        func.coalesce(func.sum(RequestLog.cost), 0.0).label("cost"),
        func.avg(RequestLog.duration_ms).label("avg_duration_ms"),
        # Only requests that streamed a first byte have one; zeros would drag the mean down.
        func.avg(case((RequestLog.first_byte_ms > 0, RequestLog.first_byte_ms))).label("avg_first_byte_ms"),
    ]
    columns += [func.coalesce(func.sum(getattr(RequestLog, kind)), 0).label(kind) for kind in TOKEN_KINDS]
    return columns


def _load_view(row: Any) -> dict[str, Any]:
    mapping = row._mapping
    return {
        "requests": int(mapping["requests"] or 0),
        "success": int(mapping["success"] or 0),
        "errors": int(mapping["errors"] or 0),
        **{kind: int(mapping[kind] or 0) for kind in TOKEN_KINDS},
        "cost": money(mapping["cost"]),
        "avg_duration_ms": round(float(mapping["avg_duration_ms"] or 0), 2),
        "avg_first_byte_ms": round(float(mapping["avg_first_byte_ms"] or 0), 2),
    }


async def logs_summary(session: AsyncSession, f: LogFilter) -> dict[str, Any]:
    """Totals over the filtered logs plus the request count per status."""
    conditions = log_conditions(f)
    row = (await session.execute(select(*_load_columns()).where(*conditions))).one()
    by_status = await session.execute(
        select(RequestLog.status, func.count())
        .where(*conditions)
        .group_by(RequestLog.status)
        .order_by(func.count().desc())
    )
    return {**_load_view(row), "by_status": {str(status): int(n) for status, n in by_status.tuples()}}


async def account_load(session: AsyncSession, *, since: datetime) -> list[dict[str, Any]]:
    """Per upstream account since `since`, busiest first, with the account's name, type and status."""
    per_account = (
        select(
            RequestLog.account_id,
            *_load_columns(),
            func.max(RequestLog.created_at).label("last_used_at"),
        )
        .where(RequestLog.account_id.is_not(None), RequestLog.created_at >= since)
        .group_by(RequestLog.account_id)
        .subquery()
    )
    rows = await session.execute(
        select(per_account, Account.name, Account.type, Account.status)
        .outerjoin(Account, Account.id == per_account.c.account_id)
        .order_by(per_account.c.requests.desc(), per_account.c.account_id)
    )
    return [
        {
            "account_id": row.account_id,
            # A deleted account keeps its history; its name and type are then empty.
            "account_name": row.name or "",
            "account_type": row.type or "",
            "account_status": row.status or "",
            **_load_view(row),
            "last_used_at": row.last_used_at,
        }
        for row in rows
    ]
