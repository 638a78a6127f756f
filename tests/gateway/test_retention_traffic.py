"""The relay's own retention job deletes a backlog of old request logs while it serves traffic: no
request fails, every request is logged exactly once, usage records and the daily roll-up stay.

The backlog is written before the relay starts; the job's first run comes a few seconds after
start, while the clients below are already sending (the test checks that the old rows were still
there once traffic flowed, so the deletion did overlap it).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, insert, select

from aiproxy.store.db import Database
from aiproxy.store.models import DailyUsage, OperationLog, RequestLog, UsageRecord, utcnow

from ..support import RelayServer
from .conftest import Upstream
from .restarts import Backend, admin_with_account

OLD_LOGS = 30_000  # more than a dozen batches
OLD_AGE = timedelta(days=40)  # past the 30 days request logs are kept
CLIENTS = 4  # under the user's default concurrency limit
MODEL = "claude-opus-4-8"


async def _backlog(url: str) -> None:
    db = Database(url)
    old = utcnow() - OLD_AGE
    logs = [
        {
            "request_id": f"old-{n}",
            "user_id": 1,
            "api_key_id": 0,
            "request_body": "b" * 1024,
            "created_at": old,
        }
        for n in range(OLD_LOGS)
    ]
    try:
        async with db.engine.begin() as conn:
            for start in range(0, OLD_LOGS, 5000):
                await conn.execute(insert(RequestLog), logs[start : start + 5000])
            await conn.execute(
                insert(UsageRecord),
                [{"request_id": f"old-{n}", "user_id": 1, "created_at": old} for n in range(100)],
            )
            await conn.execute(
                insert(DailyUsage),
                [
                    {"day": (old - timedelta(days=n)).date(), "user_id": 1, "request_count": 9}
                    for n in range(10)
                ],
            )
            await conn.execute(
                insert(OperationLog),
                [
                    {"action": "create", "resource": "user", "created_at": utcnow() - timedelta(days=100)}
                    for _ in range(50)
                ],
            )
    finally:
        await db.close()


async def _counts(url: str, key_id: int) -> dict[str, int]:
    db = Database(url)
    cutoff = utcnow() - timedelta(days=30)

    async def count(model: Any, *where: Any) -> int:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)

    try:
        async with db.session() as session:
            return {
                "old_logs": await count(RequestLog, RequestLog.created_at < cutoff),
                "logged": await count(RequestLog, RequestLog.api_key_id == key_id),
                "distinct": int(
                    await session.scalar(
                        select(func.count(func.distinct(RequestLog.request_id))).where(
                            RequestLog.api_key_id == key_id
                        )
                    )
                    or 0
                ),
                "old_usage": await count(UsageRecord, UsageRecord.created_at < cutoff),
                "daily": await count(DailyUsage, DailyUsage.request_count == 9),
                "old_operations": await count(OperationLog, OperationLog.created_at < cutoff),
            }
    finally:
        await db.close()


async def _old_logs(url: str) -> int:
    return (await _counts(url, -1))["old_logs"]


async def _traffic(relay: RelayServer, key: str, url: str) -> tuple[list[int], list[int]]:
    """Requests from CLIENTS clients until the backlog is gone (and a second more); returns the
    statuses and the backlog sizes seen meanwhile."""
    body = {"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    statuses: list[int] = []
    backlog: list[int] = []
    done = asyncio.Event()

    async def client(http: httpx.AsyncClient) -> None:
        while not done.is_set():
            reply = await http.post("/claude/v1/messages", json=body, headers={"x-api-key": key})
            statuses.append(reply.status_code)

    async def watch() -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            backlog.append(await _old_logs(url))
            if backlog[-1] == 0:
                await asyncio.sleep(1.0)  # traffic after the last batch too
                break
            await asyncio.sleep(0.1)
        done.set()

    async with httpx.AsyncClient(base_url=relay.base_url, timeout=30) as http:
        await asyncio.gather(watch(), *(client(http) for _ in range(CLIENTS)))
    return statuses, backlog


def test_retention_under_traffic(tmp_path: Path, backend: Backend, upstream: Upstream) -> None:
    relay = RelayServer(data_dir=tmp_path, env_overrides=backend.env)
    url = backend.database_url(tmp_path)
    relay.set_configs({"captcha_enabled": "false"})  # migrates first
    asyncio.run(_backlog(url))
    relay.start()
    try:
        admin = admin_with_account(relay, f"ret-{uuid.uuid4().hex[:8]}", upstream.base_url)
        created = admin.ok("POST", "/api/api-keys", json={"name": "load", "rate_limit": 0})
        statuses, backlog = asyncio.run(_traffic(relay, created["key"], url))
        admin.close()

        assert backlog[0] > 0, "the job ran before traffic started: nothing was proven"
        assert backlog[-1] == 0
        assert statuses and set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}
        # Every request logged exactly once, once the recorder has caught up.
        deadline = time.monotonic() + 20
        while True:
            counts = asyncio.run(_counts(url, created["id"]))
            if counts["logged"] >= len(statuses) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert counts == {
            "old_logs": 0,
            "logged": len(statuses),
            "distinct": len(statuses),
            "old_usage": 100,
            "daily": 10,
            "old_operations": 0,
        }
    finally:
        relay.stop()
    assert "Traceback" not in relay.log_text()
