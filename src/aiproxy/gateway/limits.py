"""Everything the caller's key and user allow, checked before any upstream call.

Order: key and user status, expiry, platforms and models (403); then the counters:
requests per minute (sliding window), requests per day, dollars per month (429); then
the user's concurrent requests (a slot held until the answer ends). Counters live in
shared state so every instance enforces the same limits. A counter missing from state
(fresh Redis, restarted single instance) is seeded from the database once.

Without shared state a limit cannot be checked, so it fails closed: a request that needs one
(a key with rate_limit, daily_limit or monthly_quota, a user or account with max_concurrency)
is refused with 503, an account whose slot cannot be taken is skipped. Requests with no such
limit never touch shared state here and keep working. Giving back, renewing and counting
after the fact are best effort: leases expire by themselves.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import func, select

from .. import state_keys
from ..store.db import Database
from ..store.models import RequestLog, UsageRecord
from ..store.state import SharedState, StateUnavailable, warn_unavailable
from . import errors as e
from .auth import Caller
from .errors import GatewayError

log = logging.getLogger(__name__)

DAY_TTL = 2 * 86400
MONTH_TTL = 32 * 86400
ACCOUNTS_BUSY = e.NO_ACCOUNT + "（账户并发已满）"


def _unchecked(exc: StateUnavailable, what: str) -> GatewayError:
    warn_unavailable(log, what, exc)
    return GatewayError(503, e.STATE_UNAVAILABLE)


def check_caller(caller: Caller, now: float) -> None:
    if caller.key_status != "active":
        raise GatewayError(401, e.KEY_DISABLED)
    if caller.expires_at is not None and caller.expires_at <= now:
        raise GatewayError(401, e.KEY_EXPIRED)
    if caller.user_status != "active":
        raise GatewayError(401, e.USER_DISABLED)


def check_model_allowed(caller: Caller, model: str) -> None:
    if caller.allowed_models is not None and model not in caller.allowed_models:
        raise GatewayError(403, e.MODEL_FORBIDDEN)


def _day_key(key_id: int, now: datetime) -> str:
    return f"count:key:{key_id}:day:{now:%Y%m%d}"


def _month_key(key_id: int, now: datetime) -> str:
    return f"cost:key:{key_id}:month:{now:%Y%m}"


class Limits:
    def __init__(self, state: SharedState, db: Database) -> None:
        self._state = state
        self._db = db

    async def admit(self, caller: Caller) -> datetime:
        """Count this request against the key's windows, or refuse it: 429 over a limit, 503 when a
        limit the key has cannot be checked."""
        now = datetime.now(UTC)
        try:
            if caller.rate_limit > 0:
                decision = await self._state.hit(f"rate:key:{caller.key_id}", caller.rate_limit, 60.0)
                if not decision.allowed:
                    retry = str(max(1, int(decision.retry_after + 0.999)))
                    raise GatewayError(429, e.RATE_LIMITED, headers={"retry-after": retry})
            if caller.daily_limit > 0:
                key = _day_key(caller.key_id, now)
                await self._seed_day(caller.key_id, key, now)
                count = await self._state.incr(key, 1, ttl=DAY_TTL)
                if count > caller.daily_limit:
                    await self._state.incr(key, -1, ttl=DAY_TTL)
                    raise GatewayError(429, e.DAILY_LIMIT)
            if caller.monthly_quota > 0:
                key = _month_key(caller.key_id, now)
                await self._seed_month(caller.key_id, key, now)
                if await self._state.get_float(key) >= caller.monthly_quota:
                    raise GatewayError(429, e.MONTHLY_QUOTA)
        except StateUnavailable as exc:
            raise _unchecked(exc, "refusing keys with request or cost limits") from exc
        return now

    async def refund_day(self, caller: Caller, admitted_at: datetime) -> None:
        """A request refused after admit (e.g. no free slot) does not use up the day's allowance."""
        if caller.daily_limit > 0:
            try:
                await self._state.incr(_day_key(caller.key_id, admitted_at), -1, ttl=DAY_TTL)
            except StateUnavailable as exc:  # the day keeps one request too many: the safe side
                warn_unavailable(log, "daily request counts not refunded", exc)

    async def add_cost(self, caller: Caller, cost: float, admitted_at: datetime) -> None:
        if caller.monthly_quota > 0 and cost > 0:
            try:
                await self._state.incr_float(_month_key(caller.key_id, admitted_at), cost, ttl=MONTH_TTL)
            except StateUnavailable as exc:  # still billed and logged in the database
                warn_unavailable(log, "monthly cost counters not updated", exc)

    async def take_user_slot(self, caller: Caller, holder: str, lease: float) -> None:
        if caller.user_max_concurrency <= 0:
            return
        try:
            ok = await self._state.acquire_slot(
                state_keys.user_slots(caller.user_id), holder, caller.user_max_concurrency, lease
            )
        except StateUnavailable as exc:
            raise _unchecked(exc, "refusing users with max_concurrency") from exc
        if not ok:
            raise GatewayError(429, e.USER_CONCURRENCY)

    # -- concurrency slots of accounts, and of any request in flight ------------------------------

    async def take_account_slot(self, key: str, holder: str, limit: int, lease: float) -> bool:
        """One of an account's ``limit`` slots; False when they are all taken, and also when shared
        state cannot be reached: a cap that cannot be checked counts as full, so the relay skips the
        account and may still use one without a cap (see :meth:`no_free_account`)."""
        try:
            return await self._state.acquire_slot(key, holder, limit, lease)
        except StateUnavailable as exc:
            warn_unavailable(log, "skipping accounts with max_concurrency", exc)
            return False

    def no_free_account(self) -> GatewayError:
        """The refusal when every candidate account was skipped for its slot: 503 when that was
        because shared state is down, else 429 (all busy)."""
        if not self._state.available:
            return GatewayError(503, e.STATE_UNAVAILABLE)
        return GatewayError(429, ACCOUNTS_BUSY)

    async def release_slot(self, key: str, holder: str) -> None:
        """Give a slot back. Never raises for an outage: the lease then runs out by itself."""
        try:
            await self._state.release_slot(key, holder)
        except StateUnavailable as exc:
            warn_unavailable(log, "slots not released (their leases expire)", exc)

    async def renew_slots(self, slots: Iterable[tuple[str, str]], lease: float) -> None:
        """Extend the leases of a long answer's slots. Without shared state the answer carries on and
        the leases are left to run out (after which the slot may be handed out again a little early)."""
        try:
            for key, holder in slots:
                await self._state.renew_slot(key, holder, lease)
        except StateUnavailable as exc:
            warn_unavailable(log, "slot leases not renewed", exc)

    async def _seed_day(self, key_id: int, key: str, now: datetime) -> None:
        if await self._state.get(key) is not None:
            return
        start = datetime(now.year, now.month, now.day, tzinfo=UTC)
        async with self._db.session() as session:
            count = await session.scalar(
                select(func.count(RequestLog.id)).where(
                    RequestLog.api_key_id == key_id,
                    RequestLog.created_at >= start,
                    # What admission counted: requests that reached an account. Refusals, model
                    # lists and requests no account took are logged too, but never counted;
                    # token counting is free.
                    RequestLog.status != "rejected",
                    RequestLog.account_id.is_not(None),
                    RequestLog.path.not_like("%count_tokens"),
                    RequestLog.path.not_like("%:countTokens"),
                )
            )
        await self._state.set(key, str(int(count or 0)), ttl=DAY_TTL, only_if_absent=True)

    async def _seed_month(self, key_id: int, key: str, now: datetime) -> None:
        if await self._state.get(key) is not None:
            return
        start = datetime(now.year, now.month, 1, tzinfo=UTC)
        async with self._db.session() as session:
            spent = await session.scalar(
                select(func.coalesce(func.sum(UsageRecord.cost), 0.0)).where(
                    UsageRecord.api_key_id == key_id, UsageRecord.created_at >= start
                )
            )
        await self._state.set(key, repr(float(spent or 0.0)), ttl=MONTH_TTL, only_if_absent=True)
