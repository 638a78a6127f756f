"""Data migrations do what they say on a database that holds data."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from sqlalchemy import select

from aiproxy.store.db import Database
from aiproxy.store.migrate import alembic_config
from aiproxy.store.models import ApiKey, UsageRecord, User


async def test_key_request_count_is_recounted_from_what_was_billed(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    config = alembic_config(url)
    await asyncio.to_thread(command.upgrade, config, "0002")
    db = Database(url)
    try:
        async with db.transaction() as session:
            user = User(username="old", password_hash="x")
            session.add(user)
            await session.flush()
            keys = [
                ApiKey(user_id=user.id, name=name, key_hash=name * 8, key_encrypted="", key_prefix="sk-")
                for name in ("served", "refused")
            ]
            session.add_all(keys)
            await session.flush()
            keys[0].request_count = 7  # 3 billed, 4 refused: what earlier versions stored
            keys[1].request_count = 2  # only refused
            session.add_all(
                UsageRecord(request_id=f"r{i}", user_id=user.id, api_key_id=keys[0].id) for i in range(3)
            )
        await asyncio.to_thread(command.upgrade, config, "head")
        async with db.session() as session:
            rows = await session.execute(select(ApiKey.name, ApiKey.request_count))
            counts = {name: count for name, count in rows}
        assert counts == {"served": 3, "refused": 0}
    finally:
        await db.close()
