"""Relayed-request history written straight into a running relay's database.

Until the gateway records real traffic, tests describe calls as `Call` values and `record()`
writes what the recorder would: a `request_logs` row per call, a `usage_records` row per
successful call, and the `daily_usage` roll-up of those records (added to any existing row).
Tests compute their expected numbers from the same `Call` values.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from aiproxy.store.db import Database
from aiproxy.store.models import Account, DailyUsage, RequestLog, UsageRecord

from .support import RelayServer

# USD per 1M tokens: input, output, cache creation, cache read.
PRICES = {
    "claude-sonnet-4-5": (3.0, 15.0, 3.75, 0.3),
    "claude-opus-4-1": (15.0, 75.0, 18.75, 1.5),
    "gpt-5": (1.25, 10.0, 0.0, 0.125),
}
TOKEN_NAMES = ("input_tokens", "output_tokens", "cache_creation_tokens", "cache_read_tokens", "total_tokens")
PLATFORMS = {"claude-sonnet-4-5": "claude", "claude-opus-4-1": "claude", "gpt-5": "openai"}


def database_url(relay: RelayServer) -> str:
    return (
        relay.env_overrides.get("AIPROXY_DATABASE_URL") or f"sqlite+aiosqlite:///{relay.data_dir}/aiproxy.db"
    )


def utc_now() -> datetime:
    return datetime.now(UTC)


def day_at(day: date, hour: int = 12, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=UTC)


def today_at_latest(hour: int) -> datetime:
    """A time today, never in the future (tests may run just after midnight)."""
    now = utc_now()
    return min(day_at(now.date(), hour), now - timedelta(seconds=1))


@dataclass
class Call:
    user_id: int
    api_key_id: int | None
    at: datetime
    model: str = "claude-sonnet-4-5"
    account_id: int | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_tokens: int = 0
    cache_read_tokens: int = 0
    price_rate: float = 1.0
    status: str = "success"
    status_code: int = 200
    stream: bool = False
    duration_ms: int = 1000
    first_byte_ms: int = 0
    error_message: str = ""
    request_id: str = field(default_factory=lambda: f"req_{uuid.uuid4().hex[:16]}")

    @property
    def ok(self) -> bool:
        return self.status == "success"

    @property
    def platform(self) -> str:
        return PLATFORMS[self.model]

    @property
    def day(self) -> date:
        return self.at.astimezone(UTC).date()

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_creation_tokens + self.cache_read_tokens

    @property
    def cost(self) -> float:
        if not self.ok:
            return 0.0
        counts = (self.input_tokens, self.output_tokens, self.cache_creation_tokens, self.cache_read_tokens)
        listed = sum(n * p for n, p in zip(counts, PRICES[self.model], strict=True)) / 1_000_000
        return round(listed * self.price_rate, 6)


def _log_row(call: Call) -> RequestLog:
    tokens = (call.input_tokens, call.output_tokens, call.cache_creation_tokens, call.cache_read_tokens)
    if not call.ok:
        tokens = (0, 0, 0, 0)
    return RequestLog(
        request_id=call.request_id,
        user_id=call.user_id,
        api_key_id=call.api_key_id,
        account_id=call.account_id,
        platform=call.platform,
        model=call.model,
        upstream_model=call.model,
        path="/v1/messages" if call.platform == "claude" else "/v1/chat/completions",
        stream=call.stream,
        status=call.status,
        status_code=call.status_code,
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        cache_creation_tokens=tokens[2],
        cache_read_tokens=tokens[3],
        total_tokens=sum(tokens),
        cost=call.cost,
        duration_ms=call.duration_ms,
        first_byte_ms=call.first_byte_ms,
        client_ip="203.0.113.7",
        user_agent="claude-cli/2.0.14 (external, cli)",
        client_type="claude_code",
        error_message=call.error_message,
        request_headers='{"content-type": "application/json"}',
        request_body=f'{{"model": "{call.model}", "messages": []}}',
        response_body='{"type": "message"}' if call.ok else '{"type": "error"}',
        created_at=call.at,
    )


def _usage_row(call: Call) -> UsageRecord:
    return UsageRecord(
        request_id=call.request_id,
        user_id=call.user_id,
        api_key_id=call.api_key_id,
        account_id=call.account_id,
        platform=call.platform,
        model=call.model,
        input_tokens=call.input_tokens,
        output_tokens=call.output_tokens,
        cache_creation_tokens=call.cache_creation_tokens,
        cache_read_tokens=call.cache_read_tokens,
        total_tokens=call.total_tokens,
        price_rate=call.price_rate,
        cost=call.cost,
        created_at=call.at,
    )


async def _add_rollup(session: AsyncSession, calls: list[Call]) -> None:
    groups: dict[tuple[date, int, int, str], list[Call]] = defaultdict(list)
    for call in calls:
        groups[(call.day, call.user_id, call.api_key_id or 0, call.model)].append(call)
    for (day, user_id, key_id, model), members in groups.items():
        row = await session.scalar(
            select(DailyUsage).where(
                DailyUsage.day == day,
                DailyUsage.user_id == user_id,
                DailyUsage.api_key_id == key_id,
                DailyUsage.model == model,
            )
        )
        if row is None:
            # Column defaults apply only at flush: start the counters at zero explicitly.
            zeros = dict.fromkeys(("request_count", *TOKEN_NAMES), 0)
            row = DailyUsage(
                day=day,
                user_id=user_id,
                api_key_id=key_id,
                model=model,
                platform=members[0].platform,
                cost=0.0,
                **zeros,
            )
            session.add(row)
        row.request_count += len(members)
        for name in TOKEN_NAMES:
            setattr(row, name, getattr(row, name) + sum(getattr(c, name) for c in members))
        row.cost += sum(c.cost for c in members)


async def _record(url: str, calls: list[Call]) -> list[int]:
    db = Database(url)
    try:
        async with db.transaction() as session:
            logs = [_log_row(call) for call in calls]
            session.add_all(logs)
            billed = [call for call in calls if call.ok]
            session.add_all(_usage_row(call) for call in billed)
            await _add_rollup(session, billed)
            await session.flush()
            return [log.id for log in logs]
    finally:
        await db.close()


def record(relay: RelayServer, calls: Iterable[Call]) -> list[int]:
    """Write the calls; returns the request log ids in the same order."""
    return asyncio.run(_record(database_url(relay), list(calls)))


async def _accounts(url: str, specs: list[tuple[str, str]]) -> list[int]:
    db = Database(url)
    try:
        async with db.transaction() as session:
            rows = [Account(name=name, type=kind) for name, kind in specs]
            session.add_all(rows)
            await session.flush()
            return [row.id for row in rows]
    finally:
        await db.close()


def add_accounts(relay: RelayServer, *specs: tuple[str, str]) -> list[int]:
    """Upstream accounts (name, type) for the logs to point at; returns their ids."""
    return asyncio.run(_accounts(database_url(relay), list(specs)))
