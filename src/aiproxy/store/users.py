"""Keyword-only persistence functions for users and their API keys (shared by API and CLI)."""

from __future__ import annotations

import logging
import secrets
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..errors import BadRequest, NotFound
from ..security.api_keys import display_prefix, generate_api_key, hash_api_key
from ..security.passwords import hash_password
from ..security.secretbox import SecretBox
from .client_filter import check_client_list
from .models import AccountGroup, ApiKey, User, UserPackage
from .state import SharedState, StateUnavailable, warn_unavailable

log = logging.getLogger(__name__)

MAX_KEYS_PER_USER = 10
# Bumped by every change to a key or a user that the gateway's caller snapshots depend on.
CALLERS_VERSION = "callers:version"


async def bump_callers_version(state: SharedState) -> None:
    """Empty every instance's caller cache. Without shared state the change still arrives: cached
    callers are reloaded from the database within seconds anyway."""
    try:
        await state.incr(CALLERS_VERSION)
    except StateUnavailable as exc:
        warn_unavailable(log, "key/user change saved; caller caches refresh within seconds", exc)


async def commit_callers_change(session: AsyncSession, state: SharedState) -> None:
    """Commit a change to keys, users or their packages, then empty every instance's caller cache
    (in this order: a caller reloaded on the announcement sees the change)."""
    await session.commit()
    await bump_callers_version(state)


async def check_group(session: AsyncSession, group_id: int | None) -> None:
    """A key or user may only be bound to a group that exists."""
    if group_id is not None and await session.get(AccountGroup, group_id) is None:
        raise BadRequest("account_group_id: account group not found")


KEY_PACKAGE_INVALID = "user_package_id: 用户套餐不存在或不属于该用户"


async def check_key_package(
    session: AsyncSession, *, user_id: int, user_package_id: int | None
) -> int | None:
    """The user package a key of `user_id` is bound to: None or 0 unbinds; any other id must be a
    user package of the key's owner (whatever its status)."""
    if not user_package_id:
        return None
    holding = await session.get(UserPackage, user_package_id)
    if holding is None or holding.user_id != user_id:
        raise BadRequest(KEY_PACKAGE_INVALID)
    return user_package_id


async def get_user(session: AsyncSession, user_id: int) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound("user not found")
    return user


async def find_user_by_name(session: AsyncSession, username: str) -> User | None:
    return await session.scalar(select(User).where(User.username == username))


async def create_user(
    session: AsyncSession,
    *,
    username: str,
    password: str,
    email: str = "",
    role: str = "user",
    status: str = "active",
    price_rate: float = 1.0,
    max_concurrency: int = 10,
    balance: float = 0.0,
    account_group_id: int | None = None,
) -> User:
    if await find_user_by_name(session, username) is not None:
        raise BadRequest("username already exists")
    await check_group(session, account_group_id)
    user = User(
        username=username,
        email=email or "",
        password_hash=hash_password(password),
        role=role,
        status=status,
        price_rate=price_rate,
        max_concurrency=max_concurrency,
        balance=balance,
        account_group_id=account_group_id,
    )
    session.add(user)
    await session.flush()
    return user


def set_password(user: User, password: str) -> None:
    """Store a new password and invalidate every token issued before."""
    user.password_hash = hash_password(password)
    user.token_version += 1


async def ensure_first_admin(session: AsyncSession, *, password: str | None) -> tuple[User, str] | None:
    """Create `admin` when no admin exists. Returns (user, password) when one was created."""
    existing = await session.scalar(select(User.id).where(User.role == "admin").limit(1))
    if existing is not None:
        return None
    chosen = password or secrets.token_urlsafe(12)
    user = await find_user_by_name(session, "admin")
    if user is None:
        user = await create_user(session, username="admin", password=chosen, role="admin")
    else:  # a plain user called admin: promote it rather than fail to start
        user.role = "admin"
        user.status = "active"
        set_password(user, chosen)
    return user, chosen


async def count_keys(session: AsyncSession, user_id: int) -> int:
    total = await session.scalar(select(func.count()).select_from(ApiKey).where(ApiKey.user_id == user_id))
    return int(total or 0)


async def create_api_key(
    session: AsyncSession, box: SecretBox, *, user_id: int, name: str, fields: dict[str, Any]
) -> tuple[ApiKey, str]:
    """Create a key for a user; returns the row and the full key (shown once)."""
    if await count_keys(session, user_id) >= MAX_KEYS_PER_USER:
        raise BadRequest(f"每个用户最多创建 {MAX_KEYS_PER_USER} 个 API Key")
    raw = generate_api_key()
    await check_group(session, fields.get("account_group_id"))
    await check_client_list(session, fields.get("allowed_clients"))
    fields = {**fields}
    if "user_package_id" in fields:
        fields["user_package_id"] = await check_key_package(
            session, user_id=user_id, user_package_id=fields["user_package_id"]
        )
    key = ApiKey(
        user_id=user_id,
        name=name,
        key_hash=hash_api_key(raw),
        key_encrypted=box.encrypt(raw),
        key_prefix=display_prefix(raw),
    )
    apply_key_fields(key, fields)
    session.add(key)
    await session.flush()
    return key, raw


async def update_api_key(session: AsyncSession, key: ApiKey, changes: dict[str, Any]) -> None:
    """Apply a key's changed fields after checking the group and the user package they name."""
    if "account_group_id" in changes:
        await check_group(session, changes["account_group_id"])
    await check_client_list(session, changes.get("allowed_clients"))
    if "user_package_id" in changes:
        changes = {
            **changes,
            "user_package_id": await check_key_package(
                session, user_id=key.user_id, user_package_id=changes["user_package_id"]
            ),
        }
    apply_key_fields(key, changes)


def apply_key_fields(key: ApiKey, fields: dict[str, Any]) -> None:
    for name, value in fields.items():
        if value is None and name not in {"expires_at", "account_group_id", "user_package_id"}:
            continue
        if name == "allowed_platforms" and value == "":
            value = "all"
        setattr(key, name, value)


async def get_user_key(session: AsyncSession, *, user_id: int, key_id: int) -> ApiKey:
    key = await session.get(ApiKey, key_id)
    if key is None or key.user_id != user_id:
        raise NotFound("API Key 不存在")
    return key


def toggle_key(key: ApiKey) -> None:
    key.status = "disabled" if key.status == "active" else "active"
