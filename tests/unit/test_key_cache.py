"""The gateway's API-key cache: one database read per key at a time, refreshed ahead of expiry,
and nothing read before a change is kept after it."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.exc import OperationalError

from aiproxy.gateway import auth
from aiproxy.gateway.auth import Caller, KeyCache
from aiproxy.security.api_keys import hash_api_key
from aiproxy.store.db import Database
from aiproxy.store.migrate import upgrade_to_head
from aiproxy.store.models import ApiKey, User
from aiproxy.store.state.memory import MemoryState
from aiproxy.store.users import bump_callers_version

RAW_KEY = "sk-key-cache-test-0123456789abcdef"


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("key-cache-template")
    path = directory / "aiproxy.db"
    upgrade_to_head(f"sqlite+aiosqlite:///{path}", directory)
    return path


@pytest.fixture
async def db(migrated: Path, tmp_path: Path) -> AsyncIterator[Database]:
    path = tmp_path / "aiproxy.db"
    shutil.copy(migrated, path)
    database = Database(f"sqlite+aiosqlite:///{path}")
    async with database.session() as session:
        user = User(username="cache-user", password_hash="x")
        session.add(user)
        await session.flush()
        session.add(
            ApiKey(
                user_id=user.id,
                name="k",
                key_hash=hash_api_key(RAW_KEY),
                key_encrypted="x",
                key_prefix="sk-key",
            )
        )
        await session.commit()
    yield database
    await database.close()


class CountingCache(KeyCache):
    """Counts database reads and can hold each one until the test lets it finish."""

    def __init__(self, db: Database, state: MemoryState) -> None:
        super().__init__(db, state)
        self.reads = 0
        self.gate: asyncio.Event | None = None

    async def _load(self, digest: str) -> Caller | None:
        self.reads += 1
        if self.gate is not None:
            await self.gate.wait()
        return await super()._load(digest)


async def _set_status(db: Database, status: str) -> None:
    async with db.session() as session:
        await session.execute(update(ApiKey).values(status=status))
        await session.commit()


def _age_entries(cache: KeyCache, seconds: float) -> None:
    for digest, (loaded_at, caller) in list(cache._entries.items()):
        cache._entries[digest] = (loaded_at - seconds, caller)


async def test_concurrent_misses_share_one_read(db: Database) -> None:
    cache = CountingCache(db, MemoryState())
    cache.gate = asyncio.Event()
    waiting = [asyncio.ensure_future(cache.resolve(RAW_KEY)) for _ in range(50)]
    await asyncio.sleep(0.01)
    cache.gate.set()
    callers = await asyncio.gather(*waiting)
    assert cache.reads == 1
    assert {c.key_status for c in callers if c is not None} == {"active"}
    assert all(c is callers[0] for c in callers)
    assert await cache.resolve(RAW_KEY) is callers[0] and cache.reads == 1  # cached now


async def test_a_snapshot_near_expiry_is_served_while_one_request_refreshes_it(db: Database) -> None:
    cache = CountingCache(db, MemoryState())
    first = await cache.resolve(RAW_KEY)
    assert first is not None and first.key_status == "active"
    await _set_status(db, "disabled")
    _age_entries(cache, auth.REFRESH_AFTER + 0.1)
    cache.gate = asyncio.Event()
    # Every request in the refresh window gets the snapshot at once; only one reads the database.
    assert [await cache.resolve(RAW_KEY) for _ in range(20)] == [first] * 20
    await asyncio.sleep(0)  # the refresh has started
    assert cache.reads == 2
    cache.gate.set()
    for _ in range(100):
        await asyncio.sleep(0.01)
        if not cache._loading:
            break
    refreshed = await cache.resolve(RAW_KEY)
    assert refreshed is not None and refreshed.key_status == "disabled"
    assert cache.reads == 2


async def test_an_expired_snapshot_is_never_served(db: Database) -> None:
    cache = CountingCache(db, MemoryState())
    assert (await cache.resolve(RAW_KEY)).key_status == "active"  # type: ignore[union-attr]
    await _set_status(db, "disabled")
    _age_entries(cache, auth.SNAPSHOT_TTL + 0.1)
    assert (await cache.resolve(RAW_KEY)).key_status == "disabled"  # type: ignore[union-attr]
    assert cache.reads == 2


async def test_a_read_begun_before_a_change_is_neither_joined_nor_kept(db: Database) -> None:
    state = MemoryState()
    cache = CountingCache(db, state)
    cache.gate = asyncio.Event()
    before = asyncio.ensure_future(cache.resolve(RAW_KEY))
    await asyncio.sleep(0.01)
    assert cache.reads == 1
    # An admin disables the key (commit, then announce) while that read is held up.
    await _set_status(db, "disabled")
    await bump_callers_version(state)
    after = asyncio.ensure_future(cache.resolve(RAW_KEY))
    await asyncio.sleep(0.01)
    assert cache.reads == 2  # the request after the change did not join the older read
    cache.gate.set()
    old, new = await asyncio.gather(before, after)
    assert old is not None and new is not None and new.key_status == "disabled"
    # Whatever the older read saw, the cache holds the answer read after the change.
    assert (await cache.resolve(RAW_KEY)).key_status == "disabled"  # type: ignore[union-attr]
    assert cache.reads == 2


async def test_a_waiter_that_goes_away_does_not_cancel_the_shared_read(db: Database) -> None:
    cache = CountingCache(db, MemoryState())
    cache.gate = asyncio.Event()
    leaving = asyncio.ensure_future(cache.resolve(RAW_KEY))
    staying = asyncio.ensure_future(cache.resolve(RAW_KEY))
    await asyncio.sleep(0.01)
    leaving.cancel()
    cache.gate.set()
    caller = await staying
    assert caller is not None and caller.key_status == "active"
    assert leaving.cancelled() and cache.reads == 1


async def test_a_failed_read_reaches_its_waiters_and_is_not_cached(db: Database) -> None:
    cache = CountingCache(Database("sqlite+aiosqlite:////nonexistent/dir/aiproxy.db"), MemoryState())
    results = await asyncio.gather(*(cache.resolve(RAW_KEY) for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, OperationalError) for r in results) and cache.reads == 1
    assert not cache._entries and not cache._loading
    with pytest.raises(OperationalError):
        await cache.resolve(RAW_KEY)
    assert cache.reads == 2


async def test_forget_all_drops_the_snapshots_and_the_reads_under_way(db: Database) -> None:
    cache = CountingCache(db, MemoryState())
    assert (await cache.resolve(RAW_KEY)).key_status == "active"  # type: ignore[union-attr]
    await _set_status(db, "disabled")  # straight in the database: no version moves
    assert (await cache.resolve(RAW_KEY)).key_status == "active"  # type: ignore[union-attr]
    cache.forget_all()
    assert (await cache.resolve(RAW_KEY)).key_status == "disabled"  # type: ignore[union-attr]
    assert cache.reads == 2

    # A read under way when the cache is emptied answers its waiter but is not kept.
    _age_entries(cache, auth.SNAPSHOT_TTL + 0.1)
    cache.gate = asyncio.Event()
    under_way = asyncio.ensure_future(cache.resolve(RAW_KEY))
    await asyncio.sleep(0.01)
    assert cache.reads == 3
    cache.forget_all()
    cache.gate.set()
    assert (await under_way) is not None
    assert not cache._entries and not cache._loading
    await cache.resolve(RAW_KEY)
    assert cache.reads == 4
