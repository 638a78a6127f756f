"""Billing test equipment: a migrated SQLite database per test."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aiproxy.store.db import Database
from aiproxy.store.migrate import upgrade_to_head


@pytest.fixture(scope="session")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file, copied for every test (migrating costs a second each time)."""
    directory = tmp_path_factory.mktemp("journal-template")
    path = directory / "aiproxy.db"
    upgrade_to_head(f"sqlite+aiosqlite:///{path}", directory)
    return path


@pytest.fixture
async def db(migrated: Path, tmp_path: Path) -> AsyncIterator[Database]:
    path = tmp_path / "aiproxy.db"
    shutil.copy(migrated, path)
    database = Database(f"sqlite+aiosqlite:///{path}")
    yield database
    await database.close()
