"""Read-side usage aggregates over `usage_records`, shared by the user and admin views."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from ..store.models import UsageRecord


def _filters(user_id: int | None, api_key_id: int | None) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if user_id is not None:
        conditions.append(UsageRecord.user_id == user_id)
    if api_key_id is not None:
        conditions.append(UsageRecord.api_key_id == api_key_id)
    return conditions


async def usage_summary(
    session: AsyncSession, *, user_id: int | None = None, api_key_id: int | None = None
) -> dict[str, Any]:
    """All-time totals plus today's (UTC) cost, tokens and requests."""
    conditions = _filters(user_id, api_key_id)
    totals = (
        await session.execute(
            select(
                func.coalesce(func.sum(UsageRecord.cost), 0.0),
                func.coalesce(func.sum(UsageRecord.total_tokens), 0),
                func.coalesce(func.sum(UsageRecord.input_tokens), 0),
                func.coalesce(func.sum(UsageRecord.output_tokens), 0),
                func.coalesce(func.sum(UsageRecord.cache_creation_tokens), 0),
                func.coalesce(func.sum(UsageRecord.cache_read_tokens), 0),
                func.count(UsageRecord.id),
            ).where(*conditions)
        )
    ).one()
    midnight = datetime.combine(datetime.now(UTC).date(), time.min, tzinfo=UTC)
    today = (
        await session.execute(
            select(
                func.coalesce(func.sum(UsageRecord.cost), 0.0),
                func.coalesce(func.sum(UsageRecord.total_tokens), 0),
                func.count(UsageRecord.id),
            ).where(*conditions, UsageRecord.created_at >= midnight)
        )
    ).one()
    return {
        "total_cost": float(totals[0]),
        "total_tokens": int(totals[1]),
        "input_tokens": int(totals[2]),
        "output_tokens": int(totals[3]),
        "cache_creation_tokens": int(totals[4]),
        "cache_read_tokens": int(totals[5]),
        "request_count": int(totals[6]),
        "today": {"cost": float(today[0]), "tokens": int(today[1]), "requests": int(today[2])},
    }
