"""Admin: the request log of every relayed call, its totals, per-account load and per-user usage."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from ...billing.log_queries import LogFilter, account_load, get_log, list_logs, logs_summary
from ...billing.usage_queries import UsageScope, users_usage
from ...errors import NotFound
from ...store.models import utcnow
from ..audit import AuditedRoute
from ..deps import Paging, SessionDep, admin_user
from ..envelope import FastJSONResponse, ok, page
from ..numbers import IdFilter, PathId
from ..usage import date_range

router = APIRouter(
    prefix="/api/admin/logs",
    tags=["admin: logs"],
    route_class=AuditedRoute,
    dependencies=[Depends(admin_user)],
)


def log_filter(
    user_id: IdFilter = None,
    api_key_id: IdFilter = None,
    account_id: IdFilter = None,
    model: Annotated[str | None, Query(max_length=128)] = None,
    platform: Annotated[str | None, Query(max_length=32)] = None,
    status: Annotated[str | None, Query(max_length=16)] = None,
    start_date: str | None = None,
    end_date: str | None = None,
) -> LogFilter:
    start, end = date_range(start_date, end_date)
    return LogFilter(
        user_id=user_id,
        api_key_id=api_key_id,
        account_id=account_id,
        model=model,
        platform=platform,
        status=status,
        start=start,
        end=end,
    )


Filters = Annotated[LogFilter, Depends(log_filter)]


@router.get("")
async def list_request_logs(session: SessionDep, paging: Paging, filters: Filters) -> FastJSONResponse:
    total, items = await list_logs(session, filters, offset=paging.offset, limit=paging.page_size)
    return page(items, total=total, page=paging.page, page_size=paging.page_size)


@router.get("/summary")
async def summary(session: SessionDep, filters: Filters) -> FastJSONResponse:
    return ok(await logs_summary(session, filters))


@router.get("/account-load")
async def load(session: SessionDep, hours: Annotated[int, Query(ge=1, le=720)] = 24) -> FastJSONResponse:
    since = utcnow() - timedelta(hours=hours)
    return ok({"hours": hours, "since": since, "items": await account_load(session, since=since)})


@router.get("/usage-summary")
async def usage_by_user(
    session: SessionDep,
    paging: Paging,
    start_date: str | None = None,
    end_date: str | None = None,
    model: Annotated[str | None, Query(max_length=128)] = None,
) -> FastJSONResponse:
    start, end = date_range(start_date, end_date)
    scope = UsageScope(model=model, start=start, end=end)
    total, items = await users_usage(session, scope, offset=paging.offset, limit=paging.page_size)
    return page(items, total=total, page=paging.page, page_size=paging.page_size)


@router.get("/{log_id}")
async def get_request_log(log_id: PathId, session: SessionDep) -> FastJSONResponse:
    entry = await get_log(session, log_id)
    if entry is None:
        raise NotFound("request log not found")
    return ok(entry)
