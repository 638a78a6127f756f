"""Admin: the audit trail of admin writes."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, cast

from fastapi import APIRouter, Depends, Query
from sqlalchemy import Table, func, select
from sqlalchemy.sql.elements import ColumnElement

from ...billing.retention import cutoff_for, purge
from ...errors import BadRequest, NotFound
from ...store.models import OperationLog, utcnow
from ..audit import AuditedRoute
from ..deps import Paging, ServicesDep, SessionDep, admin_user
from ..envelope import FastJSONResponse, ok, page
from ..numbers import IdFilter, PathId
from ..views import operation_log_view

router = APIRouter(
    prefix="/api/admin/operation-logs",
    tags=["admin: operation logs"],
    route_class=AuditedRoute,
    dependencies=[Depends(admin_user)],
)


# Day filters become [start, end + 1 day) windows: a day at the calendar's edge would overflow.
EARLIEST_DAY = date(1970, 1, 1)
LATEST_DAY = date(9998, 12, 31)


def parse_day(value: str | None, field: str) -> date | None:
    if not value:
        return None
    try:
        day = date.fromisoformat(value[:10])
    except ValueError:
        raise BadRequest(f"{field}: expected a date as YYYY-MM-DD") from None
    if not EARLIEST_DAY <= day <= LATEST_DAY:
        raise BadRequest(f"{field}: must be between {EARLIEST_DAY} and {LATEST_DAY}")
    return day


def _conditions(
    user_id: int | None,
    action: str | None,
    resource: str | None,
    start_date: str | None,
    end_date: str | None,
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if user_id is not None:
        conditions.append(OperationLog.user_id == user_id)
    if action:
        conditions.append(OperationLog.action == action)
    if resource:
        conditions.append(OperationLog.resource == resource)
    start = parse_day(start_date, "start_date")
    end = parse_day(end_date, "end_date")
    if start:
        conditions.append(OperationLog.created_at >= datetime.combine(start, time.min, tzinfo=UTC))
    if end:
        conditions.append(
            OperationLog.created_at < datetime.combine(end + timedelta(days=1), time.min, tzinfo=UTC)
        )
    return conditions


@router.get("")
async def list_logs(
    session: SessionDep,
    paging: Paging,
    user_id: IdFilter = None,
    action: Annotated[str | None, Query(max_length=32)] = None,
    resource: Annotated[str | None, Query(max_length=64)] = None,
    start_date: str | None = None,
    end_date: str | None = None,
) -> FastJSONResponse:
    conditions = _conditions(user_id, action, resource, start_date, end_date)
    total = await session.scalar(select(func.count()).select_from(OperationLog).where(*conditions))
    rows = await session.scalars(
        select(OperationLog)
        .where(*conditions)
        .order_by(OperationLog.id.desc())
        .offset(paging.offset)
        .limit(paging.page_size)
    )
    return page(
        [operation_log_view(r) for r in rows],
        total=int(total or 0),
        page=paging.page,
        page_size=paging.page_size,
    )


@router.get("/stats")
async def stats(
    session: SessionDep, start_date: str | None = None, end_date: str | None = None
) -> FastJSONResponse:
    conditions = _conditions(None, None, None, start_date, end_date)
    total = await session.scalar(select(func.count()).select_from(OperationLog).where(*conditions))

    async def grouped(column: ColumnElement[str]) -> dict[str, int]:
        rows = await session.execute(
            select(column, func.count()).where(*conditions).group_by(column).order_by(func.count().desc())
        )
        return {str(name): int(count) for name, count in rows.tuples()}

    midnight = datetime.combine(utcnow().date(), time.min, tzinfo=UTC)
    today = await session.scalar(
        select(func.count()).select_from(OperationLog).where(OperationLog.created_at >= midnight)
    )
    return ok(
        {
            "total": int(total or 0),
            "today": int(today or 0),
            "by_action": await grouped(OperationLog.action),
            "by_resource": await grouped(OperationLog.resource),
            "by_user": await grouped(OperationLog.username),
        }
    )


@router.delete("/cleanup")
async def cleanup(
    services: ServicesDep, days: Annotated[int | None, Query(ge=1, le=3650)] = None
) -> FastJSONResponse:
    """Delete entries older than `days` days (default: the `operation_log_retention_days` config),
    in the retention job's short batches: a large table never holds the database's write lock long."""
    if days is None:
        days = int(services.configs.get("operation_log_retention_days"))
    cutoff = cutoff_for(days)
    if cutoff is None:  # a configured retention longer than the calendar keeps everything
        return ok({"deleted": 0, "days": days})
    purged = await purge(services.db, cast(Table, OperationLog.__table__), cutoff)
    return ok({"deleted": purged.deleted, "days": days})


@router.get("/{log_id}")
async def get_log(log_id: PathId, session: SessionDep) -> FastJSONResponse:
    entry = await session.get(OperationLog, log_id)
    if entry is None:
        raise NotFound("operation log not found")
    return ok(operation_log_view(entry, with_body=True))
