"""What the caller's key and user allow (status, expiry, models), and accounts' concurrency slots.

The counted limits (requests per minute and per day, dollars per month, the user's concurrent
requests, packages) are taken together by admission.py. Account slots are taken per attempt by
the relay: without shared state a cap cannot be checked, so the account is skipped (fails
closed), while accounts without a cap keep serving. Giving back and renewing are best effort:
leases expire by themselves.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from ..store.state import SharedState, StateUnavailable, warn_unavailable
from . import errors as e
from .auth import Caller
from .errors import GatewayError

log = logging.getLogger(__name__)

ACCOUNTS_BUSY = e.NO_ACCOUNT + "（账户并发已满）"


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


class Limits:
    """Concurrency slots of accounts, and the leases of a request in flight."""

    def __init__(self, state: SharedState) -> None:
        self._state = state

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

    async def renew(self, holder: str, lease: float, *, slots: Iterable[str], budgets: Iterable[str]) -> None:
        """Extend the leases of a long answer's slots and holds (one round trip). Without shared
        state the answer carries on and the leases are left to run out (after which a slot may be
        handed out again a little early)."""
        try:
            await self._state.renew_holds(holder, lease, slots=list(slots), budgets=list(budgets))
        except StateUnavailable as exc:
            warn_unavailable(log, "slot leases not renewed", exc)
