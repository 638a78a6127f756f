"""Where admission's counters start from when shared state has lost them: what the database says
was really served (see admission.py)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select

from ..store.db import Database
from ..store.models import RequestLog, UsageRecord, UserPackage


async def key_requests_since(db: Database, key_id: int, since: datetime) -> float:
    """Requests of a key that counted against its daily limit since ``since``."""
    async with db.session() as session:
        count = await session.scalar(
            select(func.count(RequestLog.id)).where(
                RequestLog.api_key_id == key_id,
                RequestLog.created_at >= since,
                # What admission counted: requests that reached an account. Refusals, model
                # lists and requests no account took are logged too, but never counted;
                # token counting is free.
                RequestLog.status != "rejected",
                RequestLog.account_id.is_not(None),
                RequestLog.path.not_like("%count_tokens"),
                RequestLog.path.not_like("%:countTokens"),
            )
        )
    return float(count or 0)


async def key_cost_since(db: Database, key_id: int, since: datetime) -> float:
    """Dollars billed to a key since ``since``."""
    async with db.session() as session:
        spent = await session.scalar(
            select(func.coalesce(func.sum(UsageRecord.cost), 0.0)).where(
                UsageRecord.api_key_id == key_id, UsageRecord.created_at >= since
            )
        )
    return float(spent or 0.0)


async def package_requests_since(db: Database, user_package_id: int, since: datetime) -> float:
    """Requests a user package paid for since ``since`` (its current day)."""
    async with db.session() as session:
        count = await session.scalar(
            select(func.count(UsageRecord.id)).where(
                UsageRecord.user_package_id == user_package_id, UsageRecord.created_at >= since
            )
        )
    return float(count or 0)


async def package_used(db: Database, user_package_id: int, *, tokens: bool) -> float:
    """Tokens (or dollars) a user package has paid for: its running total, kept by the recorder."""
    column = UserPackage.used_tokens if tokens else UserPackage.used_cost
    async with db.session() as session:
        used = await session.scalar(select(column).where(UserPackage.id == user_package_id))
    return float(used or 0)
