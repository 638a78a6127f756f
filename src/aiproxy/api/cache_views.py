"""How the live cache is shown through the API: shared-state entries joined with their rows.

Shared state knows ids only (an API key's bindings, a user's or an account's slots); the names an
operator looks for come from the database, read here for the ids on one answer at once. An entry
whose row is gone (a key or account deleted while its state lives on) is shown with empty names.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..gateway.live_state import Binding
from ..store.account_marks import mark_end
from ..store.models import Account, ApiKey, User


@dataclass(frozen=True, slots=True)
class KeyOwner:
    user_id: int
    username: str


async def key_owners(session: AsyncSession, *, key_ids: Collection[int]) -> dict[int, KeyOwner]:
    """{api key id: its owner} for the keys that still exist."""
    if not key_ids:
        return {}
    rows = await session.execute(
        select(ApiKey.id, User.id, User.username)
        .join(User, User.id == ApiKey.user_id)
        .where(ApiKey.id.in_(list(key_ids)))
    )
    return {key_id: KeyOwner(user_id, username) for key_id, user_id, username in rows}


async def user_key_ids(session: AsyncSession, *, user_id: int) -> set[int]:
    return set(await session.scalars(select(ApiKey.id).where(ApiKey.user_id == user_id)))


async def accounts_by_id(session: AsyncSession, *, ids: Collection[int]) -> dict[int, Account]:
    if not ids:
        return {}
    return {a.id: a for a in await session.scalars(select(Account).where(Account.id.in_(list(ids))))}


async def users_by_id(session: AsyncSession, *, ids: Collection[int]) -> dict[int, User]:
    if not ids:
        return {}
    return {u.id: u for u in await session.scalars(select(User).where(User.id.in_(list(ids))))}


def _seconds(value: float | None) -> int | None:
    return None if value is None else max(0, math.ceil(value))


def session_view(
    binding: Binding, owner: KeyOwner | None, account: Account | None, now: float
) -> dict[str, Any]:
    return {
        "session_id": binding.session_id,
        "api_key_id": binding.key_id,
        "user_id": owner.user_id if owner else None,
        "username": owner.username if owner else "",
        "account_id": binding.account_id,
        "account_name": account.name if account else "",
        "bound_at": (datetime.fromtimestamp(binding.bound_at, UTC) if binding.bound_at is not None else None),
        "age_seconds": binding.age(now),
        "ttl_seconds": _seconds(binding.ttl),
    }


def held_view(account: Account, now: datetime) -> dict[str, Any]:
    """An account a timed mark keeps out of rotation (see `account_marks.held_accounts`)."""
    until = mark_end(account)
    return {
        "id": account.id,
        "name": account.name,
        "type": account.type,
        "status": account.status,
        "reason": account.status_reason,
        "until": until,  # None: set without an end, it lasts until an admin changes it
        "remaining_seconds": _seconds((until - now).total_seconds()) if until else None,
    }


def account_live_view(
    account_id: int, account: Account | None, *, in_use: int, sessions: int, held: bool
) -> dict[str, Any]:
    return {
        "id": account_id,
        "name": account.name if account else "",
        "type": account.type if account else "",
        "status": account.status if account else "",
        "enabled": account.enabled if account else False,
        "concurrency": in_use,
        "max_concurrency": account.max_concurrency if account else 0,
        "sessions": sessions,
        "unavailable": held,
        "until": mark_end(account) if account and held else None,
        "reason": account.status_reason if account and held else "",
    }


def user_live_view(user_id: int, user: User | None, *, in_use: int, sessions: int) -> dict[str, Any]:
    return {
        "id": user_id,
        "username": user.username if user else "",
        "concurrency": in_use,
        "max_concurrency": user.max_concurrency if user else 0,
        "sessions": sessions,
    }
