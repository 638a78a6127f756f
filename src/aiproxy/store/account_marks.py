"""Timed marks on accounts: the admin's `unavailable`, the relay's cooldowns, and lifting them.

`unavailable` takes an account out of rotation until a time an operator chose, the way a cooldown
(`rate_limited`, `overloaded`) does after an upstream error: the gateway skips it until then
(`PoolAccount.usable`), and the first request it serves afterwards puts it back to `valid`
(`AccountPool.recover`). The health check never brings it back early: it probes only what
traffic took out of rotation. Its end is kept in `overloaded_until` (the pool reads the later of
the two `*_until` columns), its reason in `status_reason`; `last_error` is left alone, so the mark
reads as set by an admin, not by traffic.

Callers commit, then bump the pool version (`accounts.bump_pool_version`): every instance reloads
its pool within half a second.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from .accounts import TIMED_STATUSES
from .models import Account

UNAVAILABLE = "unavailable"
DEFAULT_REASON = "marked unavailable by an admin"
# Marks that an `unavailable` mark would end early, by bringing the account back when it ends.
NEEDS_AN_ADMIN = ("invalid", "token_expired")
_LIFTED = {"status": "valid", "status_reason": "", "rate_limited_until": None, "overloaded_until": None}


def mark_end(account: Account) -> datetime | None:
    """When the account's timed mark ends; None when it has no end (or is not timed)."""
    ends = [t for t in (account.rate_limited_until, account.overloaded_until) if t is not None]
    return max(ends) if ends else None


async def mark_unavailable(session: AsyncSession, *, account_id: int, until: datetime, reason: str) -> None:
    """Out of rotation until `until`, whatever timed mark it had; `reason` shown as its status reason.

    One UPDATE naming every column, not attributes set on a loaded row: a row loaded while still
    `unavailable` and lifted meanwhile (its old mark ended and a request put it back) would
    otherwise not get its status written again, the ORM seeing no change."""
    await session.execute(
        update(Account)
        .where(Account.id == account_id)
        .values(
            status=UNAVAILABLE,
            status_reason=reason or DEFAULT_REASON,
            rate_limited_until=None,
            overloaded_until=until,
        )
    )


async def lift_mark(session: AsyncSession, *, account_id: int) -> bool:
    """Back to `valid` when a timed mark holds it (ended or not); False when it has none."""
    result = await session.execute(
        update(Account).where(Account.id == account_id, Account.status.in_(TIMED_STATUSES)).values(**_LIFTED)
    )
    return bool(getattr(result, "rowcount", 0))


async def lift_all_marks(session: AsyncSession) -> int:
    """Every account held by a timed mark back to `valid`; how many. The last error stays."""
    result = await session.execute(
        update(Account).where(Account.status.in_(TIMED_STATUSES)).values(**_LIFTED)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def ended_at(now: datetime) -> ColumnElement[bool]:
    """A timed mark with an end, and that end has passed at `now`.

    What lifting a mark that ended by itself must check in the same statement: a mark set since
    (by an admin, or by traffic on another instance) has a later end, or none, and stays."""
    rate_limited, overloaded = Account.rate_limited_until, Account.overloaded_until
    return and_(
        Account.status.in_(TIMED_STATUSES),
        or_(rate_limited.is_not(None), overloaded.is_not(None)),
        or_(rate_limited.is_(None), rate_limited <= now),
        or_(overloaded.is_(None), overloaded <= now),
    )


def _held_at(now: datetime) -> ColumnElement[bool]:
    """Enabled, with a timed mark that has not ended at `now` (or has no end)."""
    return and_(
        Account.enabled.is_(True),
        Account.status.in_(TIMED_STATUSES),
        or_(
            Account.rate_limited_until > now,
            Account.overloaded_until > now,
            and_(Account.rate_limited_until.is_(None), Account.overloaded_until.is_(None)),
        ),
    )


async def held_accounts(session: AsyncSession, *, now: datetime) -> list[Account]:
    """The enabled accounts a timed mark keeps out of rotation at `now`, by id."""
    return list(await session.scalars(select(Account).where(_held_at(now)).order_by(Account.id)))
