"""The user-package rules that need usage the API cannot write: used-up quotas, status refresh."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from aiproxy.errors import BadRequest
from aiproxy.store import packages as store
from aiproxy.store.db import Database
from aiproxy.store.models import Base, User, UserPackage

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture
async def session(tmp_path: Path) -> AsyncIterator[AsyncSession]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'packages.db'}")
    async with db.engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    try:
        async with db.session() as session:
            yield session
    finally:
        await db.close()


async def _user(session: AsyncSession, name: str) -> int:
    user = User(username=name, password_hash="x")
    session.add(user)
    await session.flush()
    return user.id


async def _holding(session: AsyncSession, user_id: int, **fields: object) -> UserPackage:
    package = await store.create_package(session, name="p", token_quota=100, cost_quota=2.0, valid_days=10)
    return await store.assign_package(session, user_id=user_id, package_id=package.id, now=NOW, **fields)


async def test_refresh_marks_expired_then_exhausted(session: AsyncSession) -> None:
    alice, bob = await _user(session, "alice"), await _user(session, "bob")
    tokens_gone = await _holding(session, alice)
    cost_gone = await _holding(session, alice)
    both = await _holding(session, alice)
    fine = await _holding(session, alice)
    bobs = await _holding(session, bob)
    tokens_gone.used_tokens = 100
    cost_gone.used_cost = 2.5
    both.used_tokens = 1000
    bobs.used_tokens = 100
    await session.flush()

    # Usable now means: not past the end and no nonzero quota used up, even before a refresh.
    usable = await store.list_active_user_packages(session, user_id=alice, now=NOW)
    assert [h.id for h in usable] == [fine.id]

    later = NOW + 5 * DAY
    both.end_time = later - DAY
    await session.flush()
    assert await store.refresh_statuses(session, now=later, user_id=alice) == 3
    statuses = {h.id: h.status for h in await store.list_user_packages(session, user_id=alice)}
    assert statuses == {
        tokens_gone.id: "exhausted",
        cost_gone.id: "exhausted",
        both.id: "expired",  # expiry is applied first
        fine.id: "active",
    }
    assert (await store.get_user_package(session, bobs.id)).status == "active"  # another user's
    assert await store.refresh_statuses(session, now=later) == 1
    assert (await store.get_user_package(session, bobs.id)).status == "exhausted"


async def test_exhausted_comes_back_with_more_quota(session: AsyncSession) -> None:
    uid = await _user(session, "carol")
    holding = await _holding(session, uid)
    holding.used_tokens, holding.used_cost = 150, 1.0
    await store.refresh_statuses(session, now=NOW)
    assert holding.status == "exhausted"

    with pytest.raises(BadRequest, match="Token 额度已用完"):
        await store.update_user_package(session, user_package_id=holding.id, status="active", now=NOW)
    with pytest.raises(BadRequest, match="Token 额度已用完"):
        await store.update_user_package(
            session, user_package_id=holding.id, token_quota=120, status="active", now=NOW
        )
    # Still used up with a quota raised too little: stays exhausted.
    await store.update_user_package(session, user_package_id=holding.id, token_quota=150, now=NOW)
    assert holding.status == "exhausted"
    await store.update_user_package(session, user_package_id=holding.id, token_quota=200, now=NOW)
    assert holding.status == "active"
    # 0 = no cap: lifting the cap revives it too.
    holding.used_cost = 2.0
    await store.update_user_package(session, user_package_id=holding.id, status="exhausted", now=NOW)
    with pytest.raises(BadRequest, match="金额额度已用完"):
        await store.update_user_package(session, user_package_id=holding.id, status="active", now=NOW)
    await store.update_user_package(session, user_package_id=holding.id, cost_quota=0, now=NOW)
    assert holding.status == "active"


async def test_extend_skips_an_exhausted_holding_and_reset_restarts(session: AsyncSession) -> None:
    uid = await _user(session, "dave")
    holding = await _holding(session, uid)
    package_id = holding.package_id
    assert package_id is not None
    holding.used_tokens = 100
    await session.flush()
    renewed = await store.assign_package(session, user_id=uid, package_id=package_id, mode="extend", now=NOW)
    assert renewed.id != holding.id and holding.status == "exhausted"

    renewed.used_tokens, renewed.used_cost = 40, 0.5
    later = NOW + 3 * DAY
    reset = await store.assign_package(session, user_id=uid, package_id=package_id, mode="reset", now=later)
    assert reset.id == renewed.id
    assert (reset.used_tokens, reset.used_cost, reset.token_quota, reset.status) == (0, 0.0, 100, "active")
    assert (reset.start_time, reset.end_time) == (later, later + 10 * DAY)


def test_remaining() -> None:
    assert store.remaining(0, 50) is None
    assert store.remaining(100, 150) == 0
    assert store.remaining(2.0, 0.5) == 1.5
