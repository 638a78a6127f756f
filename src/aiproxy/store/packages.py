"""Keyword-only persistence functions for packages and the packages users hold.

A package is what is sold. A user package is one holding of it: its own copy of the quotas
(`token_quota` tokens, `cost_quota` dollars; 0 = no cap of that kind) and `daily_limit`, a window
`[start_time, end_time)` and a status:

- `active`: usable while `start_time <= now < end_time` and no nonzero quota is used up;
- `disabled`: switched off by an admin;
- `expired`: `end_time` has passed; `exhausted`: a nonzero quota is used up.

`refresh_statuses` moves stale `active` rows to `expired`/`exhausted`; listings call it first.
Every change is followed by `bump_callers_version` (by the caller, after its commit): the gateway
caches each caller's packages under that version.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, and_, func, not_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..errors import BadRequest, NotFound
from .client_filter import check_client_list
from .models import Package, UserPackage, utcnow
from .state import SharedState
from .users import commit_callers_change, get_user

PACKAGE_STATUSES = ("active", "disabled")
USER_PACKAGE_STATUSES = ("active", "disabled", "expired", "exhausted")
AssignMode = Literal["new", "extend", "reset"]
# Writable package columns (create and update).
PACKAGE_FIELDS = frozenset(
    {
        "name",
        "description",
        "price",
        "token_quota",
        "cost_quota",
        "valid_days",
        "allowed_platforms",
        "allowed_models",
        "allowed_clients",
        "rate_limit",
        "daily_limit",
        "status",
        "sort_order",
    }
)
MAX_TOKENS = 2**63 - 1  # BIGINT

PACKAGE_NOT_FOUND = "套餐不存在"
USER_PACKAGE_NOT_FOUND = "用户套餐不存在"
PACKAGE_IN_USE = "套餐仍被 {count} 个有效的用户套餐使用，请先停用或删除这些用户套餐"
NOT_ACTIVE_EXPIRED = "用户套餐已过期（end_time 已过），不能设为 active：请同时把 end_time 改到将来"
NOT_ACTIVE_TOKENS = "用户套餐的 Token 额度已用完，不能设为 active：请同时提高 token_quota"
NOT_ACTIVE_COST = "用户套餐的金额额度已用完，不能设为 active：请同时提高 cost_quota"
END_BEFORE_START = "end_time: 结束时间必须晚于开始时间"
OUT_OF_RANGE = "valid_days: 结束时间超出可表示的范围"


# --- quota and status rules ------------------------------------------------------------------


def used_up_clause(
    *, tokens: int | ColumnElement[int] = 0, cost: float | ColumnElement[float] = 0.0
) -> ColumnElement[bool]:
    """SQL: a nonzero quota of the row is used up (once `tokens` and `cost` more are added, as
    numbers or as bound parameters)."""
    return or_(
        and_(UserPackage.token_quota > 0, UserPackage.used_tokens + tokens >= UserPackage.token_quota),
        and_(UserPackage.cost_quota > 0, UserPackage.used_cost + cost >= UserPackage.cost_quota),
    )


def _used_up_reason(token_quota: int, used_tokens: int, cost_quota: float, used_cost: float) -> str | None:
    if token_quota > 0 and used_tokens >= token_quota:
        return NOT_ACTIVE_TOKENS
    if cost_quota > 0 and used_cost >= cost_quota:
        return NOT_ACTIVE_COST
    return None


def natural_status(holding: UserPackage, now: datetime) -> str:
    """What an enabled holding is at `now`: expired, exhausted or active."""
    if holding.end_time <= now:
        return "expired"
    used_up = _used_up_reason(holding.token_quota, holding.used_tokens, holding.cost_quota, holding.used_cost)
    return "exhausted" if used_up else "active"


def remaining(quota: float, used: float) -> float | None:
    """What is left of a quota; None when the quota is 0 (no cap)."""
    if not quota:
        return None
    return max(quota - used, 0)


def _add_quota(held: Any, added: Any, cap: float) -> Any:
    """Extending: the amounts add up, and no cap (0) on either side stays no cap."""
    if not held or not added:
        return 0
    return min(held + added, cap)


def _utc(moment: datetime) -> datetime:
    """Aware UTC; a naive time is taken as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _window_end(start: datetime, days: int) -> datetime:
    try:
        return start + timedelta(days=days)
    except OverflowError:
        raise BadRequest(OUT_OF_RANGE) from None


async def refresh_statuses(session: AsyncSession, *, now: datetime, user_id: int | None = None) -> int:
    """Move `active` rows past their end to `expired`, then those with a nonzero quota used up to
    `exhausted` (of one user, or of everyone). Returns how many rows changed; not committed."""
    await session.flush()  # the session does not autoflush: pending changes first
    scope = [UserPackage.status == "active"]
    if user_id is not None:
        scope.append(UserPackage.user_id == user_id)
    changed = 0
    for condition, status in ((UserPackage.end_time <= now, "expired"), (used_up_clause(), "exhausted")):
        result = await session.execute(
            update(UserPackage)
            .where(*scope, condition)
            .values(status=status, updated_at=now)
            .execution_options(synchronize_session="fetch")
        )
        changed += result.rowcount  # type: ignore[attr-defined]
    return changed


async def refresh_and_publish(
    session: AsyncSession, state: SharedState, *, user_id: int | None = None, now: datetime | None = None
) -> None:
    """`refresh_statuses`, committed and announced when anything changed (the listings' first step)."""
    if await refresh_statuses(session, now=now or utcnow(), user_id=user_id):
        await commit_callers_change(session, state)


# --- packages ------------------------------------------------------------------------------


async def get_package(session: AsyncSession, package_id: int) -> Package:
    package = await session.get(Package, package_id)
    if package is None:
        raise NotFound(PACKAGE_NOT_FOUND)
    return package


def _apply_package_fields(package: Package, fields: Mapping[str, Any]) -> None:
    for name, value in fields.items():
        if name not in PACKAGE_FIELDS:
            raise TypeError(f"not a writable package field: {name}")
        if value is not None:
            setattr(package, name, value)


async def create_package(
    session: AsyncSession,
    *,
    name: str,
    price: float = 0.0,
    token_quota: int = 0,
    valid_days: int = 30,
    description: str = "",
    cost_quota: float = 0.0,
    allowed_platforms: str = "",
    allowed_models: str = "",
    allowed_clients: str = "",
    rate_limit: int = 0,
    daily_limit: int = 0,
    status: str = "active",
    sort_order: int = 0,
) -> Package:
    await check_client_list(session, allowed_clients)
    package = Package(
        name=name,
        description=description,
        price=price,
        token_quota=token_quota,
        cost_quota=cost_quota,
        valid_days=valid_days,
        allowed_platforms=allowed_platforms,
        allowed_models=allowed_models,
        allowed_clients=allowed_clients,
        rate_limit=rate_limit,
        daily_limit=daily_limit,
        status=status,
        sort_order=sort_order,
    )
    session.add(package)
    await session.flush()
    return package


async def update_package(session: AsyncSession, *, package_id: int, changes: Mapping[str, Any]) -> Package:
    """Set the given fields (None = unchanged). Holdings keep the quotas they were given."""
    package = await get_package(session, package_id)
    await check_client_list(session, changes.get("allowed_clients"))
    _apply_package_fields(package, changes)
    await session.flush()
    return package


async def delete_package(session: AsyncSession, *, package_id: int, now: datetime | None = None) -> None:
    """Refused while an active holding refers to it; older holdings stay (package_id NULL, name kept)."""
    package = await get_package(session, package_id)
    # Holdings still active by the clock and their quotas, read as they are: a delete needs no
    # status refresh of every user's packages.
    in_use = await session.scalar(
        select(func.count())
        .select_from(UserPackage)
        .where(
            UserPackage.package_id == package.id,
            UserPackage.status == "active",
            UserPackage.end_time > (now or utcnow()),
            not_(used_up_clause()),
        )
    )
    if in_use:
        raise BadRequest(PACKAGE_IN_USE.format(count=int(in_use)))
    await session.delete(package)
    await session.flush()


async def list_packages(
    session: AsyncSession, *, offset: int = 0, limit: int = 20, status: str | None = None
) -> tuple[list[Package], int]:
    """One page in the shop's order (sort_order, id), and the total."""
    conditions = [Package.status == status] if status else []
    total = await session.scalar(select(func.count()).select_from(Package).where(*conditions))
    rows = await session.scalars(
        select(Package)
        .where(*conditions)
        .order_by(Package.sort_order, Package.id)
        .offset(offset)
        .limit(limit)
    )
    return list(rows), int(total or 0)


async def list_on_sale_packages(session: AsyncSession) -> list[Package]:
    rows = await session.scalars(
        select(Package).where(Package.status == "active").order_by(Package.sort_order, Package.id)
    )
    return list(rows)


# --- user packages -------------------------------------------------------------------------


async def get_user_package(session: AsyncSession, user_package_id: int) -> UserPackage:
    holding = await session.get(UserPackage, user_package_id)
    if holding is None:
        raise NotFound(USER_PACKAGE_NOT_FOUND)
    return holding


async def _live_holding(
    session: AsyncSession, *, user_id: int, package_id: int, now: datetime
) -> UserPackage | None:
    """The user's active holding of this package that ends last, if any."""
    return await session.scalar(
        select(UserPackage)
        .where(
            UserPackage.user_id == user_id,
            UserPackage.package_id == package_id,
            UserPackage.status == "active",
            UserPackage.end_time > now,
        )
        .order_by(UserPackage.end_time.desc(), UserPackage.id.desc())
        .limit(1)
    )


async def assign_package(
    session: AsyncSession,
    *,
    user_id: int,
    package_id: int,
    mode: AssignMode = "new",
    token_quota: int | None = None,
    cost_quota: float | None = None,
    valid_days: int | None = None,
    start_time: datetime | None = None,
    now: datetime | None = None,
) -> UserPackage:
    """Give a user a package: a new holding, or (`extend`, `reset`) renew the live one of the same
    package. Quotas, `valid_days` and `daily_limit` come from the package unless overridden."""
    now = now or utcnow()
    await get_user(session, user_id)
    package = await get_package(session, package_id)
    tokens = package.token_quota if token_quota is None else token_quota
    cost = package.cost_quota if cost_quota is None else cost_quota
    days = package.valid_days if valid_days is None else valid_days
    start = _utc(start_time) if start_time is not None else now
    await refresh_statuses(session, now=now, user_id=user_id)
    holding = None
    if mode != "new":
        holding = await _live_holding(session, user_id=user_id, package_id=package.id, now=now)
    if holding is None:
        holding = UserPackage(
            user_id=user_id,
            package_id=package.id,
            package_name=package.name,
            token_quota=tokens,
            used_tokens=0,
            cost_quota=cost,
            used_cost=0.0,
            daily_limit=package.daily_limit,
            start_time=start,
            end_time=_window_end(start, days),
        )
        session.add(holding)
    elif mode == "extend":
        holding.end_time = _window_end(max(holding.end_time, now), days)
        holding.token_quota = _add_quota(holding.token_quota, tokens, MAX_TOKENS)
        holding.cost_quota = _add_quota(holding.cost_quota, cost, float("inf"))
    else:  # reset: the same holding starts over
        holding.package_name = package.name
        holding.daily_limit = package.daily_limit
        holding.token_quota, holding.used_tokens = tokens, 0
        holding.cost_quota, holding.used_cost = cost, 0.0
        holding.start_time, holding.end_time = start, _window_end(start, days)
    holding.status = natural_status(holding, now)
    await session.flush()
    return holding


async def update_user_package(
    session: AsyncSession,
    *,
    user_package_id: int,
    token_quota: int | None = None,
    cost_quota: float | None = None,
    end_time: datetime | None = None,
    status: str | None = None,
    now: datetime | None = None,
) -> UserPackage:
    """Change quotas, end or status (None = unchanged). Without an explicit status a holding that is
    not disabled takes the status its new values give it (more quota or a later end revives an
    exhausted or expired one); an explicit `active` is refused while it could not be used."""
    now = now or utcnow()
    holding = await get_user_package(session, user_package_id)
    tokens = holding.token_quota if token_quota is None else token_quota
    cost = holding.cost_quota if cost_quota is None else cost_quota
    end = holding.end_time if end_time is None else _utc(end_time)
    if end_time is not None and end <= holding.start_time:
        raise BadRequest(END_BEFORE_START)
    if status == "active":
        reason = NOT_ACTIVE_EXPIRED if end <= now else None
        reason = reason or _used_up_reason(tokens, holding.used_tokens, cost, holding.used_cost)
        if reason:
            raise BadRequest(reason)
    holding.token_quota, holding.cost_quota, holding.end_time = tokens, cost, end
    if status is not None:
        holding.status = status
    elif holding.status != "disabled":
        holding.status = natural_status(holding, now)
    await session.flush()
    return holding


async def delete_user_package(session: AsyncSession, *, user_package_id: int) -> None:
    """Keys bound to it are unbound (the foreign key sets their user_package_id to NULL)."""
    holding = await get_user_package(session, user_package_id)
    await session.delete(holding)
    await session.flush()


async def list_user_packages(session: AsyncSession, *, user_id: int) -> list[UserPackage]:
    """Every holding of the user, newest first (run `refresh_statuses` first for current statuses)."""
    rows = await session.scalars(
        select(UserPackage).where(UserPackage.user_id == user_id).order_by(UserPackage.id.desc())
    )
    return list(rows)


async def list_active_user_packages(
    session: AsyncSession, *, user_id: int, now: datetime | None = None
) -> list[UserPackage]:
    """The holdings usable now, the one ending first first."""
    now = now or utcnow()
    rows = await session.scalars(
        select(UserPackage)
        .where(
            UserPackage.user_id == user_id,
            UserPackage.status == "active",
            UserPackage.start_time <= now,
            UserPackage.end_time > now,
            not_(used_up_clause()),
        )
        .order_by(UserPackage.end_time, UserPackage.id)
    )
    return list(rows)
