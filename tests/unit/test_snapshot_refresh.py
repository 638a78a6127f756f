"""The gateway's model prices and client filter: read once per pool change, however many requests
arrive while the read runs (each of them taking a database connection at once would exhaust the
pool, and the database server's connection limit with several workers)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from aiproxy.billing.pricing import PriceBook
from aiproxy.gateway import pipeline
from aiproxy.gateway.pipeline import Gateway
from aiproxy.store.db import Database
from aiproxy.store.migrate import upgrade_to_head


@pytest.fixture
def migrated(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path}/aiproxy.db"
    upgrade_to_head(url, tmp_path)  # runs its own event loop: not from inside the test's
    return url


@pytest.fixture
async def db(migrated: str) -> AsyncIterator[Database]:
    database = Database(migrated)
    yield database
    await database.close()


def _gateway(db: Database, version: int) -> Gateway:
    """A gateway with only what refreshing the snapshots reads: the database and the pool version."""
    gateway = Gateway.__new__(Gateway)
    gateway.services = SimpleNamespace(db=db)  # type: ignore[assignment]
    gateway.pool = SimpleNamespace(version=version)  # type: ignore[assignment]
    gateway._snapshots_version = -2
    gateway._snapshots_loading = None
    return gateway


async def test_one_read_per_pool_change_for_every_request_waiting(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[int] = []
    real_load = PriceBook.load.__func__  # type: ignore[attr-defined]

    async def counted(cls: type[PriceBook], database: Database) -> PriceBook:
        reads.append(gateway.pool.version)
        await asyncio.sleep(0.05)  # long enough for every request below to arrive meanwhile
        return await real_load(cls, database)  # type: ignore[no-any-return]

    monkeypatch.setattr(pipeline.PriceBook, "load", classmethod(counted))
    gateway = _gateway(db, 1)
    await asyncio.gather(*(gateway._refresh_snapshots() for _ in range(200)))
    assert reads == [1]
    assert gateway._snapshots_version == 1 and isinstance(gateway.prices, PriceBook)
    await gateway._refresh_snapshots()  # nothing changed: nothing read
    assert reads == [1]

    # A change while a read runs: requests that saw it wait for a second read, made once.
    gateway.pool.version = 2
    first = asyncio.ensure_future(gateway._refresh_snapshots())
    await asyncio.sleep(0.01)
    gateway.pool.version = 3
    await asyncio.gather(first, *(gateway._refresh_snapshots() for _ in range(50)))
    assert reads == [1, 2, 3] and gateway._snapshots_version == 3


async def test_a_failed_read_fails_its_waiters_and_the_next_request_reads_again(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing = [True]
    real_load = PriceBook.load.__func__  # type: ignore[attr-defined]

    async def flaky(cls: type[PriceBook], database: Database) -> PriceBook:
        await asyncio.sleep(0.01)
        if failing[0]:
            raise ConnectionError("database unreachable")
        return await real_load(cls, database)  # type: ignore[no-any-return]

    monkeypatch.setattr(pipeline.PriceBook, "load", classmethod(flaky))
    gateway = _gateway(db, 5)
    outcomes = await asyncio.gather(
        *(gateway._refresh_snapshots() for _ in range(10)), return_exceptions=True
    )
    assert all(isinstance(outcome, ConnectionError) for outcome in outcomes)
    assert gateway._snapshots_version == -2 and gateway._snapshots_loading is None
    failing[0] = False
    await gateway._refresh_snapshots()
    assert gateway._snapshots_version == 5
