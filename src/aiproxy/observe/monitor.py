"""The monitor's figures from the relay's own tables: accounts, users and today's traffic.

Each view has to answer within 100 ms on a database holding millions of request logs
(bench/monitor.py), so every query is bounded by something small:

- today's traffic from `request_logs` is one pass over today's rows through the `created_at`
  index (one conditional aggregate: no GROUP BY, no sort). It gives the request, success and
  error counts, the latencies and the users seen today;
- tokens and cost come from the `daily_usage` roll-up (one row per day, user, key and model):
  today's rows through its unique index, which starts with the day;
- accounts and users are small tables, grouped in the database.

"Today" is the UTC day, as everywhere in the usage views.
"""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import case, distinct, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..billing.usage_queries import TOKEN_KINDS, money
from ..store.account_marks import ended_at, held_accounts, mark_end
from ..store.accounts import ACCOUNT_STATUSES, TIMED_STATUSES
from ..store.db import Database
from ..store.models import Account, DailyUsage, RequestLog, User
from ..store.state import SharedState
from .database_stats import database_stats
from .host_stats import HostSampler
from .state_stats import state_stats

# Request-log statuses (gateway/pipeline.py): served, refused by the relay itself before any
# upstream call (limits, permissions, no account), or failed upstream / in the relay.
SUCCESS = "success"
REJECTED = "rejected"
TOP_USERS = 10
MAX_LISTED = 100  # accounts cooling down listed one by one (all of them are counted)


def day_bounds(now: datetime) -> tuple[date, datetime, datetime]:
    """Today's UTC date and its [midnight, next midnight) range."""
    today = now.astimezone(UTC).date()
    start = datetime.combine(today, time.min, tzinfo=UTC)
    return today, start, start + timedelta(days=1)


def _percent(part: float, whole: float) -> float:
    return round(part / whole * 100, 2) if whole else 0.0


def _mean(total: float, count: int) -> float:
    return round(total / count, 2) if count else 0.0


# -- today's traffic from the request logs ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Activity:
    """Today's request logs in one pass."""

    requests: int
    success: int
    rejected: int
    success_duration_ms: int  # summed over successful requests
    first_bytes: int  # requests that streamed a first byte
    first_byte_ms: int  # summed over those
    users: int  # distinct users with a request today

    @property
    def errors(self) -> int:
        return self.requests - self.success - self.rejected


async def today_activity(session: AsyncSession, *, now: datetime) -> Activity:
    _, start, end = day_bounds(now)
    one, zero = literal_column("1"), literal_column("0")
    ok = RequestLog.status == SUCCESS
    streamed = RequestLog.first_byte_ms > 0
    row = (
        await session.execute(
            select(
                func.count(),
                func.sum(case((ok, one), else_=zero)),
                func.sum(case((RequestLog.status == REJECTED, one), else_=zero)),
                func.sum(case((ok, RequestLog.duration_ms), else_=zero)),
                func.sum(case((streamed, one), else_=zero)),
                func.sum(case((streamed, RequestLog.first_byte_ms), else_=zero)),
                func.count(distinct(RequestLog.user_id)),
            ).where(RequestLog.created_at >= start, RequestLog.created_at < end)
        )
    ).one()
    return Activity(*(int(value or 0) for value in row))


# -- today's usage from the daily roll-up ----------------------------------------------------------


def _usage_sums() -> list[Any]:
    columns = [func.sum(DailyUsage.request_count).label("request_count")]
    columns += [func.sum(getattr(DailyUsage, kind)).label(kind) for kind in TOKEN_KINDS]
    return [*columns, func.sum(DailyUsage.cost).label("cost")]


def _usage(row: Any) -> dict[str, Any]:
    data = {"request_count": int(row.request_count or 0)}
    data.update({kind: int(getattr(row, kind) or 0) for kind in TOKEN_KINDS})
    data["cost"] = money(row.cost)
    return data


async def today_by_model(session: AsyncSession, *, now: datetime) -> list[dict[str, Any]]:
    """Billed requests, tokens and cost per (platform, model) today, most expensive first."""
    today, _, _ = day_bounds(now)
    rows = await session.execute(
        select(DailyUsage.platform, DailyUsage.model, *_usage_sums())
        .where(DailyUsage.day == today)
        .group_by(DailyUsage.platform, DailyUsage.model)
    )
    items = [{"platform": row.platform, "model": row.model, **_usage(row)} for row in rows]
    items.sort(key=lambda item: (-item["cost"], item["platform"], item["model"]))
    return items


def _summed(items: list[dict[str, Any]], names: tuple[str, ...]) -> dict[str, Any]:
    totals: dict[str, Any] = dict.fromkeys(names, 0)
    totals["cost"] = 0.0
    for item in items:
        for name in names:
            totals[name] += item[name]
        totals["cost"] += item["cost"]
    totals["cost"] = money(totals["cost"])
    return totals


def _by_platform(by_model: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in by_model:
        groups[item["platform"]].append(item)
    names = ("request_count", *TOKEN_KINDS)
    items = [{"platform": platform, **_summed(group, names)} for platform, group in groups.items()]
    items.sort(key=lambda item: (-item["cost"], item["platform"]))
    return items


def today_view(activity: Activity, by_model: list[dict[str, Any]], *, now: datetime) -> dict[str, Any]:
    """The `today` view: the contract's totals (billed usage, from the roll-up), then the
    request logs' counts and latencies, then the breakdowns."""
    today, _, _ = day_bounds(now)
    totals = _summed(by_model, ("request_count", *TOKEN_KINDS))
    return {
        "date": today.isoformat(),
        "total_cost": totals["cost"],
        "total_tokens": totals["total_tokens"],
        **{kind: totals[kind] for kind in TOKEN_KINDS if kind != "total_tokens"},
        "request_count": totals["request_count"],
        "requests": {
            "total": activity.requests,
            "success": activity.success,
            "errors": activity.errors,
            "rejected": activity.rejected,
        },
        "success_rate": _percent(activity.success, activity.requests),
        "avg_duration_ms": _mean(activity.success_duration_ms, activity.success),
        "avg_first_byte_ms": _mean(activity.first_byte_ms, activity.first_bytes),
        "active_users": activity.users,
        "by_platform": _by_platform(by_model),
        "by_model": by_model,
    }


async def today_stats(session: AsyncSession, *, now: datetime) -> dict[str, Any]:
    activity = await today_activity(session, now=now)
    return today_view(activity, await today_by_model(session, now=now), now=now)


# -- users --------------------------------------------------------------------------------------


async def top_users_today(
    session: AsyncSession, *, now: datetime, limit: int = TOP_USERS
) -> list[dict[str, Any]]:
    """Today's most expensive users (billed usage), with their names ("" for a deleted user)."""
    today, _, _ = day_bounds(now)
    cost = func.sum(DailyUsage.cost).label("cost")
    per_user = (
        select(
            DailyUsage.user_id,
            cost,
            func.sum(DailyUsage.request_count).label("request_count"),
            func.sum(DailyUsage.total_tokens).label("total_tokens"),
        )
        .where(DailyUsage.day == today)
        .group_by(DailyUsage.user_id)
        .order_by(cost.desc(), DailyUsage.user_id)
        .limit(limit)
        .subquery()
    )
    rows = await session.execute(
        select(per_user, User.username)
        .outerjoin(User, User.id == per_user.c.user_id)
        .order_by(per_user.c.cost.desc(), per_user.c.user_id)
    )
    return [
        {
            "user_id": row.user_id,
            "username": row.username or "",
            "request_count": int(row.request_count or 0),
            "total_tokens": int(row.total_tokens or 0),
            "cost": money(row.cost),
        }
        for row in rows
    ]


async def user_counts(session: AsyncSession, *, now: datetime) -> dict[str, int]:
    _, start, _ = day_bounds(now)
    one, zero = literal_column("1"), literal_column("0")
    rows = await session.execute(
        select(
            User.role, User.status, func.count(), func.sum(case((User.created_at >= start, one), else_=zero))
        ).group_by(User.role, User.status)
    )
    counts = {"total": 0, "new_today": 0, "disabled": 0, "admins": 0}
    for role, status, n, new in rows.tuples():
        counts["total"] += n
        counts["new_today"] += int(new or 0)
        counts["disabled"] += n if status != "active" else 0
        counts["admins"] += n if role == "admin" else 0
    return counts


def users_view(counts: dict[str, int], activity: Activity, top: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "total": counts["total"],
        "active": activity.users,
        "new_today": counts["new_today"],
        "disabled": counts["disabled"],
        "admins": counts["admins"],
        "top_users": top,
    }


async def user_stats(session: AsyncSession, *, now: datetime) -> dict[str, Any]:
    counts = await user_counts(session, now=now)
    activity = await today_activity(session, now=now)
    return users_view(counts, activity, await top_users_today(session, now=now))


# -- accounts -----------------------------------------------------------------------------------


def _cooling_view(account: Account, now: datetime) -> dict[str, Any]:
    until = mark_end(account)
    return {
        "id": account.id,
        "name": account.name,
        "type": account.type,
        "status": account.status,
        "reason": account.status_reason,
        "until": until,  # None: no end, it lasts until an admin changes it
        "remaining_seconds": max(0, math.ceil((until - now).total_seconds())) if until else None,
    }


async def account_stats(
    session: AsyncSession, *, now: datetime, slots: tuple[int, int] | None
) -> dict[str, Any]:
    """Counts by status and type, what is in rotation, what cools down and until when.

    `slots`: (accounts holding concurrency slots, live leases), read from shared state by the
    caller; None when shared state did not answer."""
    ended = case((ended_at(now), literal_column("1")), else_=literal_column("0"))
    rows = await session.execute(
        select(Account.type, Account.enabled, Account.status, ended, func.count()).group_by(
            Account.type, Account.enabled, Account.status, ended
        )
    )
    by_status = dict.fromkeys(ACCOUNT_STATUSES, 0)
    by_type: dict[str, dict[str, int]] = {}
    counts = {"total": 0, "active": 0, "rate_limited": 0, "invalid": 0, "disabled": 0, "in_rotation": 0}
    for kind, enabled, status, mark_ended, n in rows.tuples():
        # A timed mark that has ended is usable again: the next request puts the account back.
        usable = enabled and (status == "valid" or (status in TIMED_STATUSES and bool(mark_ended)))
        kind_counts = by_type.setdefault(kind, {"total": 0, "active": 0, "in_rotation": 0})
        by_status[status] = by_status.get(status, 0) + n
        counts["total"] += n
        kind_counts["total"] += n
        # `active`, `rate_limited` and `invalid` as the contract defines them.
        if enabled and status == "valid":
            counts["active"] += n
            kind_counts["active"] += n
        counts["rate_limited"] += n if status == "rate_limited" else 0
        counts["invalid"] += n if not enabled or status == "invalid" else 0
        counts["disabled"] += 0 if enabled else n
        counts["in_rotation"] += n if usable else 0
        kind_counts["in_rotation"] += n if usable else 0
    held = await held_accounts(session, now=now)
    return {
        **counts,
        "cooling_down": len(held),
        "by_status": by_status,
        "by_type": dict(sorted(by_type.items())),
        "cooling": [_cooling_view(a, now) for a in held[:MAX_LISTED]],
        "accounts_with_slots": slots[0] if slots else None,
        "slots_in_use": slots[1] if slots else None,
    }


async def account_ids(session: AsyncSession) -> list[int]:
    return list(await session.scalars(select(Account.id)))


async def unavailable_count(session: AsyncSession, *, now: datetime) -> int:
    """Enabled accounts a timed mark keeps out of rotation now (the cache view's figure)."""
    return len(await held_accounts(session, now=now))


# -- the overview -------------------------------------------------------------------------------


async def overview(
    session: AsyncSession, *, db: Database, state: SharedState, host: HostSampler, now: datetime
) -> dict[str, Any]:
    """Every view in one answer, under the contract's names (`mysql` is the configured database).

    The parts are read side by side: today's request logs (once, for `users` and `today`) and the
    database's own figures each on a connection of their own, the session's queries, the shared
    state and the host."""

    async def activity() -> Activity:
        # The longest query (today's request logs) on a connection of its own, alongside the rest.
        async with db.session() as own:
            return await today_activity(own, now=now)

    async def from_tables() -> tuple[
        list[dict[str, Any]], dict[str, int], list[dict[str, Any]], dict[str, Any]
    ]:
        by_model = await today_by_model(session, now=now)
        counts = await user_counts(session, now=now)
        top = await top_users_today(session, now=now)
        return by_model, counts, top, await account_stats(session, now=now, slots=None)

    # A task group: when one part fails the others are cancelled, not left running on the session.
    async with asyncio.TaskGroup() as group:
        logs_task = group.create_task(activity())
        tables_task = group.create_task(from_tables())
        database_task = group.create_task(database_stats(db=db))
        cache_task = group.create_task(state_stats(state=state))
        system_task = group.create_task(host.stats())
    by_model, counts, top, accounts = tables_task.result()
    today_logs, cache = logs_task.result(), cache_task.result()
    users = users_view(counts, today_logs, top)
    today = today_view(today_logs, by_model, now=now)
    if cache["reachable"]:
        accounts["accounts_with_slots"] = cache["account_concurrency_count"]
        accounts["slots_in_use"] = cache["account_slots_in_use"]
    cache["unavailable_count"] = accounts["cooling_down"]
    return {
        "system": system_task.result(),
        "cache": cache,
        "mysql": database_task.result(),
        "accounts": accounts,
        "users": users,
        "today_usage": today,
        "updated_at": now,
    }
