"""A graceful shutdown writes every recorded request before the process exits."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import httpx

from ..support import ADMIN_PASSWORD, Api, RelayServer
from .conftest import Upstream

REQUESTS = 450  # more than two recorder batches


def test_sigterm_flushes_every_request(tmp_path: Path, upstream: Upstream) -> None:
    # A flush interval far longer than the test: only the shutdown itself can write the rows.
    relay = RelayServer(data_dir=tmp_path, env_overrides={"AIPROXY_RECORDER_FLUSH_INTERVAL": "60"})
    relay.set_configs({"captcha_enabled": "false"})  # migrates first
    relay.start()
    try:
        admin = Api(relay.base_url)
        admin.login("admin", ADMIN_PASSWORD)
        admin.ok(
            "POST",
            "/api/admin/accounts",
            json={
                "name": "only",
                "type": "claude-official",
                "api_key": "shutdown-test",
                "base_url": upstream.base_url,
            },
        )
        key = admin.ok("POST", "/api/api-keys", json={"name": "k", "rate_limit": 0})["key"]

        async def burst() -> list[int]:
            body = {
                "model": "claude-opus-4-8",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "hi"}],
            }
            gate = asyncio.Semaphore(8)  # under the user's default concurrency limit of 10

            async def one(client: httpx.AsyncClient) -> int:
                async with gate:
                    reply = await client.post("/claude/v1/messages", json=body, headers={"x-api-key": key})
                    return reply.status_code

            async with httpx.AsyncClient(base_url=relay.base_url, timeout=30) as client:
                return list(await asyncio.gather(*(one(client) for _ in range(REQUESTS))))

        assert asyncio.run(burst()) == [200] * REQUESTS
        admin.close()
    finally:
        relay.stop()  # SIGTERM with every request still in the recorder's buffer
    with sqlite3.connect(tmp_path / "aiproxy.db") as db:
        logged = db.execute("SELECT count(*), sum(total_tokens) FROM request_logs").fetchone()
        billed = db.execute("SELECT count(*) FROM usage_records").fetchone()[0]
        rolled = db.execute("SELECT sum(request_count) FROM daily_usage").fetchone()[0]
    assert logged[0] == REQUESTS and billed == REQUESTS and rolled == REQUESTS
    assert logged[1] > 0
