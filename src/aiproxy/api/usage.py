"""A user's own usage: totals, daily and monthly series, single records, per-model and per-key views.

Every figure comes from the database. The plain routes aggregate `usage_records` (one row per
request); the `/usage/db/*` routes answer the same questions from the `daily_usage` roll-up the
recorder maintains next to it, so both give the same numbers for the same data.
"""

from __future__ import annotations

import calendar
from datetime import date, timedelta
from typing import Annotated

from fastapi import APIRouter, Query

from ..billing.usage_queries import (
    UsageScope,
    daily_series,
    list_records,
    model_breakdown,
    rollup_summary,
    usage_overview,
    usage_summary,
    usage_totals,
    utc_today,
)
from ..errors import BadRequest
from ..store import users as user_store
from .admin.operation_logs import EARLIEST_DAY, LATEST_DAY, parse_day
from .deps import CurrentUser, Paging, SessionDep
from .envelope import FastJSONResponse, ok, page
from .numbers import IdFilter, PathId

router = APIRouter(prefix="/api", tags=["usage"])

DEFAULT_DAYS = 30
ModelQuery = Annotated[str | None, Query(max_length=128)]


def date_range(
    start_date: str | None, end_date: str | None, *, default_days: int | None = None
) -> tuple[date | None, date | None]:
    """Parse inclusive UTC days; with `default_days`, a missing bound makes a window ending today."""
    start = parse_day(start_date, "start_date")
    end = parse_day(end_date, "end_date")
    if default_days is not None:
        end = end or utc_today()
        start = start or end - timedelta(days=default_days - 1)
    if start is not None and end is not None and start > end:
        raise BadRequest("start_date: must not be after end_date")
    return start, end


@router.get("/usage/summary")
async def summary(user: CurrentUser, session: SessionDep) -> FastJSONResponse:
    return ok(await usage_summary(session, user_id=user.id))


@router.get("/usage/stats")
async def stats(user: CurrentUser, session: SessionDep) -> FastJSONResponse:
    return ok(await usage_overview(session, user_id=user.id))


async def _daily(
    user_id: int, session: SessionDep, start_date: str | None, end_date: str | None, *, rollup: bool
) -> FastJSONResponse:
    start, end = date_range(start_date, end_date, default_days=DEFAULT_DAYS)
    scope = UsageScope(user_id=user_id, start=start, end=end)
    return ok(await daily_series(session, scope, rollup=rollup))


@router.get("/usage/daily")
async def daily(
    user: CurrentUser, session: SessionDep, start_date: str | None = None, end_date: str | None = None
) -> FastJSONResponse:
    return await _daily(user.id, session, start_date, end_date, rollup=False)


@router.get("/usage/monthly")
async def monthly(
    user: CurrentUser,
    session: SessionDep,
    year: Annotated[int | None, Query(ge=EARLIEST_DAY.year, le=LATEST_DAY.year)] = None,
    month: Annotated[int | None, Query(ge=1, le=12)] = None,
) -> FastJSONResponse:
    today = utc_today()
    year = year or today.year
    month = month or today.month
    last_day = calendar.monthrange(year, month)[1]
    scope = UsageScope(user_id=user.id, start=date(year, month, 1), end=date(year, month, last_day))
    return ok({"year": year, "month": month, **await usage_totals(session, scope)})


@router.get("/usage/records")
async def records(
    user: CurrentUser,
    session: SessionDep,
    paging: Paging,
    start_date: str | None = None,
    end_date: str | None = None,
    model: ModelQuery = None,
    api_key_id: IdFilter = None,
) -> FastJSONResponse:
    start, end = date_range(start_date, end_date)
    # The user id is always part of the scope, so another user's key id simply matches nothing.
    scope = UsageScope(user_id=user.id, api_key_id=api_key_id, model=model, start=start, end=end)
    total, items = await list_records(session, scope, offset=paging.offset, limit=paging.page_size)
    return page(items, total=total, page=paging.page, page_size=paging.page_size)


async def _models(
    user_id: int, session: SessionDep, start_date: str | None, end_date: str | None, *, rollup: bool
) -> FastJSONResponse:
    start, end = date_range(start_date, end_date)
    scope = UsageScope(user_id=user_id, start=start, end=end)
    return ok(await model_breakdown(session, scope, rollup=rollup))


@router.get("/usage/models")
async def models(
    user: CurrentUser, session: SessionDep, start_date: str | None = None, end_date: str | None = None
) -> FastJSONResponse:
    return await _models(user.id, session, start_date, end_date, rollup=False)


@router.get("/usage/db/summary")
async def db_summary(user: CurrentUser, session: SessionDep) -> FastJSONResponse:
    return ok(await rollup_summary(session, user_id=user.id))


@router.get("/usage/db/daily")
async def db_daily(
    user: CurrentUser, session: SessionDep, start_date: str | None = None, end_date: str | None = None
) -> FastJSONResponse:
    return await _daily(user.id, session, start_date, end_date, rollup=True)


@router.get("/usage/db/models")
async def db_models(
    user: CurrentUser, session: SessionDep, start_date: str | None = None, end_date: str | None = None
) -> FastJSONResponse:
    return await _models(user.id, session, start_date, end_date, rollup=True)


@router.get("/api-keys/{key_id}/usage")
async def key_usage(key_id: PathId, user: CurrentUser, session: SessionDep) -> FastJSONResponse:
    """One of the caller's keys: its totals and its last 30 days (404 for anyone else's key)."""
    key = await user_store.get_user_key(session, user_id=user.id, key_id=key_id)
    start, end = date_range(None, None, default_days=DEFAULT_DAYS)
    scope = UsageScope(user_id=user.id, api_key_id=key.id, start=start, end=end)
    return ok(
        {
            "api_key_id": key.id,
            "name": key.name,
            "key_prefix": key.key_prefix,
            "summary": await usage_summary(session, user_id=user.id, api_key_id=key.id),
            "start_date": start,
            "end_date": end,
            "daily": await daily_series(session, scope),
        }
    )
