"""One package hammered through two relay instances sharing PostgreSQL and Redis.

Admission holds an estimate of each request against the package's budget in Redis, so the
instances together overspend the quota by at most what was in flight when it ran out, and the
package's used tokens are exactly the sum of its usage records.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from aiproxy.store.db import Database
from aiproxy.store.models import RequestLog, UsageRecord, UserPackage

from ..support import ADMIN_PASSWORD, Api
from .conftest import Upstream
from .restarts import Backend, two_instances

QUOTA = 400
WORDS = 10  # output tokens of every answer; the prompt "hi" is one input token
PER_REQUEST = WORDS + 1
BURST = 200
BODY = {"model": "claude-opus-4-8", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
EXHAUSTED = "套餐额度已用完"


async def _burst(bases: list[str], key: str) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=BURST)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        return await asyncio.gather(
            *(
                client.post(f"{bases[i % 2]}/claude/v1/messages", json=BODY, headers={"x-api-key": key})
                for i in range(BURST)
            )
        )


async def _figures(url: str, key_id: int, user_package_id: int) -> dict[str, Any]:
    db = Database(url)
    try:
        async with db.session() as session:
            logs = (
                await session.execute(
                    select(
                        RequestLog.status,
                        RequestLog.created_at,
                        RequestLog.duration_ms,
                        RequestLog.total_tokens,
                    )
                    .where(RequestLog.api_key_id == key_id)
                    .order_by(RequestLog.created_at)
                )
            ).all()
            recorded = await session.scalar(
                select(func.coalesce(func.sum(UsageRecord.total_tokens), 0)).where(
                    UsageRecord.user_package_id == user_package_id
                )
            )
            package = await session.get(UserPackage, user_package_id)
            assert package is not None
            return {
                "logs": logs,
                "recorded": int(recorded or 0),
                "used": package.used_tokens,
                "status": package.status,
            }
    finally:
        await db.close()


def _in_flight_when_spent(logs: list[Any]) -> int:
    """Served requests still running when the finished ones first reached the quota."""
    served = [
        (row.created_at - timedelta(milliseconds=row.duration_ms), row.created_at, row.total_tokens)
        for row in logs
        if row.status == "success"
    ]
    total = 0
    for _, end, tokens in sorted(served, key=lambda s: s[1]):
        total += tokens
        if total >= QUOTA:
            return sum(1 for start, finish, _ in served if start <= end < finish)
    return 0


def test_two_instances_overspend_one_package_by_at_most_what_is_in_flight(
    backend: Backend, upstream: Upstream, tmp_path: Path
) -> None:
    credential = f"up-{uuid.uuid4().hex[:12]}"
    with two_instances(backend, tmp_path) as (first, second):
        admin = Api(first.base_url)
        try:
            admin.login("admin", ADMIN_PASSWORD)
            user = admin.ok(
                "POST",
                "/api/admin/users",
                json={"username": f"u{uuid.uuid4().hex[:10]}", "password": "user-pass-1"},
            )
            admin.ok("PUT", f"/api/admin/users/{user['id']}", json={"max_concurrency": 0})
            key = admin.ok("POST", f"/api/admin/users/{user['id']}/api-keys", json={"name": "main"})
            group = admin.ok("POST", "/api/admin/account-groups", json={"name": f"g-{uuid.uuid4().hex[:8]}"})
            limits = {"account_group_id": group["id"], "rate_limit": 0}
            admin.ok("PUT", f"/api/admin/api-keys/{key['id']}", json=limits)
            admin.ok(
                "POST",
                "/api/admin/accounts",
                json={
                    "name": credential,
                    "type": "claude-official",
                    "api_key": credential,
                    "base_url": upstream.base_url,
                    "group_ids": [group["id"]],
                },
            )
            package = admin.ok(
                "POST",
                "/api/admin/packages",
                json={"name": "burst", "price": 1, "token_quota": QUOTA, "valid_days": 30},
            )
            held = admin.ok(
                "POST", f"/api/admin/user-packages/user/{user['id']}", json={"package_id": package["id"]}
            )
            # Packages required: a user whose package is used up is refused, not served without one.
            admin.ok("PUT", "/api/admin/configs", json={"key": "require_package", "value": True})
            upstream.behave(credential, "slow", delay_ms=150, words=WORDS)
            time.sleep(2.5)  # both instances see the new account, key and config (polled every 2 s)

            responses = asyncio.run(_burst([first.base_url, second.base_url], key["key"]))
            served = sum(1 for r in responses if r.status_code == 200)
            refused = [r for r in responses if r.status_code != 200]
            assert served > 0 and all(
                r.status_code == 429 and r.json()["error"]["message"] == EXHAUSTED for r in refused
            ), {r.status_code for r in refused}
            # What the burst left (holds larger than the answers): spent one request at a time.
            sent = BURST
            for i in range(QUOTA):
                sent += 1
                answer = httpx.post(
                    f"{(first, second)[i % 2].base_url}/claude/v1/messages",
                    json=BODY,
                    headers={"x-api-key": key["key"]},
                    timeout=30,
                )
                if answer.status_code != 200:
                    assert answer.status_code == 429 and answer.json()["error"]["message"] == EXHAUSTED
                    break
                served += 1

            deadline = time.monotonic() + 15
            while True:
                figures = asyncio.run(_figures(backend.database_url(tmp_path), key["id"], held["id"]))
                if len(figures["logs"]) >= sent and figures["used"] == figures["recorded"]:
                    break
                assert time.monotonic() < deadline, (len(figures["logs"]), sent)
                time.sleep(0.2)
            logs = figures["logs"]
            assert len(logs) == sent  # one row per request
            assert sum(1 for row in logs if row.status == "success") == served
            assert figures["used"] == figures["recorded"] == served * PER_REQUEST
            assert figures["status"] == "exhausted"
            overshoot = figures["used"] - QUOTA
            in_flight = _in_flight_when_spent(logs)
            print(
                f"\n{BURST} at once + {sent - BURST} one by one on two instances: {served} served, "
                f"{figures['used']} tokens used of {QUOTA} (overshoot {overshoot}), "
                f"{in_flight} in flight when spent"
            )
            assert 0 <= overshoot <= (in_flight + 1) * PER_REQUEST, (overshoot, in_flight)
        finally:
            upstream.behave(credential, "ok")
            admin.close()
