"""Live OAuth access tokens: refreshed before they expire, and on demand after an upstream 401.

Subscription accounts authenticate with short-lived access tokens and rotating refresh
tokens: every refresh retires the refresh token it used, so two refreshers racing on one
account kill it. Hence, per account, across every instance:

- one refresh at a time: a shared lock (`oauth:refresh:<id>` in shared state), and within an
  instance one in-flight refresh that concurrent callers wait for;
- inside the lock the stored tokens are read again: when another instance already rotated
  them (a newer access token, or one still far from expiry), that one is adopted and the
  vendor is not called;
- the new tokens are saved at once and alone (the token fields of the credential blob and
  `token_expires_at`, merged into what is stored now), then every instance reloads its pool.

A refused refresh token (`invalid_grant`, `refresh_token_reused`) moves the account to
`token_expired`, out of rotation until an admin logs in again. A refresh that fails for a
passing reason (429, 5xx, network) is retried after the vendor's Retry-After or a minute;
the current access token keeps serving meanwhile.

The pool snapshot stays the source of credentials; this store only holds tokens newer than
the snapshot, for the moment between a refresh and the pool's reload.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import select, update

from ..background import BackgroundTask
from ..oauth.errors import OAuthError
from ..oauth.grants import TokenGrant, refresh_grant
from ..store.accounts import ACCOUNT_TYPES, bump_pool_version, decrypt_credentials, encrypt_credentials
from ..store.models import Account
from ..store.models.base import utcnow
from ..store.state import LockNotAcquired, StateUnavailable, warn_unavailable

if TYPE_CHECKING:
    from ..observe.metrics import Metrics
    from ..services import Services
    from .pool import AccountPool, PoolAccount
    from .upstream import UpstreamClients

log = logging.getLogger(__name__)

LOCK_TTL = 45.0  # longer than one token call (30 s timeout) plus the database write
LOCK_WAIT = 35.0  # a caller waits for another instance's refresh rather than failing
RETRY_LATER = 60.0  # after a passing refresh failure without Retry-After


def refresh_lock_key(account_id: int) -> str:
    return f"oauth:refresh:{account_id}"


@dataclass(frozen=True, slots=True)
class LiveToken:
    access_token: str
    expires_at: float  # epoch seconds; 0 = unknown


@dataclass(frozen=True, slots=True)
class Renewal:
    """What a refresh attempt left: the account with usable tokens, or why there is none."""

    account: PoolAccount | None
    expired: bool = False  # the refresh token was refused: the account is now token_expired
    reason: str = ""  # why there is no new token (masked: the provider's message, a backoff, ...)
    retry_at: float | None = None  # a passing failure: when a refresh may be tried again (epoch)


class TokenStore:
    def __init__(
        self, services: Services, pool: AccountPool, clients: UpstreamClients, metrics: Metrics
    ) -> None:
        self._services = services
        self._metrics = metrics
        self._pool = pool
        self._clients = clients
        self._margin = services.settings.oauth_refresh_margin
        self._live: dict[int, LiveToken] = {}
        self._inflight: dict[int, asyncio.Future[Renewal]] = {}
        self._blocked_until: dict[int, float] = {}
        self._loop = BackgroundTask("oauth-refresh", self._sweep_forever)
        self.refreshes = 0  # vendor token calls made by this instance (for tests and metrics)

    # -- the hot path ----------------------------------------------------------------------------

    def current(self, account: PoolAccount) -> PoolAccount:
        """The account with the newest access token this instance knows."""
        live = self._live.get(account.id)
        if live is None or live.expires_at <= account.token_expires_at:
            return account
        return replace(
            account,
            credentials={**account.credentials, "access_token": live.access_token},
            token_expires_at=live.expires_at,
        )

    async def usable(self, account: PoolAccount) -> PoolAccount | None:
        """The account ready to send with: refreshed first when its token has already expired.

        None when the account cannot be used now (its refresh token was refused). Tokens that
        are merely close to expiry are the sweeper's job, not the request's.
        """
        account = self.current(account)
        expires = account.token_expires_at
        if not expires or expires > time.time() or not account.credentials.get("refresh_token"):
            return account
        renewal = await self.refresh(account, account.credentials.get("access_token", ""))
        if renewal.expired:
            return None
        return renewal.account or account

    async def after_rejection(self, account: PoolAccount) -> Renewal:
        """The upstream refused the access token (401): refresh it, unless another instance did."""
        if not account.credentials.get("refresh_token"):
            return Renewal(None)  # a setup token cannot be refreshed: the error rules decide
        return await self.refresh(account, account.credentials.get("access_token", ""), forced=True)

    def forget_live(self) -> None:
        """Drop the tokens newer than the pool snapshot (a sync: the database is the only truth).
        Each was saved before it was kept here, so the pool's reload brings it back."""
        self._live.clear()

    # -- refreshing ------------------------------------------------------------------------------

    async def refresh(
        self, account: PoolAccount, used_token: str, *, forced: bool = False, by_admin: bool = False
    ) -> Renewal:
        """One refresh per account per instance at a time; concurrent callers share its result.

        `forced`: even if the stored token is far from expiry. `by_admin`: also during the wait a
        failing token endpoint asked for (traffic never skips that wait: no retry storms)."""
        if by_admin:
            self._blocked_until.pop(account.id, None)
        running = self._inflight.get(account.id)
        if running is None:
            running = asyncio.ensure_future(self._refresh(account, used_token, forced))
            self._inflight[account.id] = running
            running.add_done_callback(lambda _f: self._inflight.pop(account.id, None))
        return await asyncio.shield(running)

    async def _refresh(self, account: PoolAccount, used_token: str, forced: bool) -> Renewal:
        blocked = self._blocked_until.get(account.id, 0.0)
        if (wait := blocked - time.time()) > 0:
            return Renewal(
                None, reason=f"the token endpoint failed; next try in {wait:.0f}s", retry_at=blocked
            )
        try:
            async with self._services.state.lock(refresh_lock_key(account.id), LOCK_TTL, wait=LOCK_WAIT):
                return await self._refresh_locked(account, used_token, forced)
        except LockNotAcquired:
            # Another instance has been refreshing for long: take whatever it stored by now.
            return await self._adopt_stored(account)
        except StateUnavailable as exc:
            # Without shared state no lock can be held across instances; refreshing anyway could
            # race another instance and kill the refresh token, so serve the current token.
            warn_unavailable(log, "OAuth refresh postponed until shared state is back", exc)
            return Renewal(
                None,
                reason="shared state is unavailable: refreshes wait for it",
                retry_at=time.time() + RETRY_LATER,
            )

    async def _refresh_locked(self, account: PoolAccount, used_token: str, forced: bool) -> Renewal:
        stored = await self._read(account.id)
        if stored is None:
            return Renewal(None)
        credentials, expires_at = stored
        now = time.time()
        stored_token = credentials.get("access_token", "")
        if stored_token and stored_token != used_token:
            return Renewal(self._remember(account, stored_token, expires_at))  # rotated elsewhere
        if not forced and expires_at and expires_at - now > self._margin:
            return Renewal(self._remember(account, stored_token, expires_at))
        flow = ACCOUNT_TYPES[account.type].oauth
        self.refreshes += 1
        try:
            grant = await refresh_grant(
                flow,
                credentials.get("refresh_token", ""),
                settings=self._services.settings,
                http=self._clients.http,
                proxy_url=account.proxy_url,
            )
        except OAuthError as exc:
            self._metrics.refreshed(account.type, "refused" if exc.terminal else "failed")
            return await self._refused(account, exc)
        self._metrics.refreshed(account.type, "refreshed")
        await self._save(account.id, grant)
        self._blocked_until.pop(account.id, None)
        log.info("account %s: OAuth access token refreshed", account.id)
        return Renewal(self._remember(account, grant.access_token, grant.expires_at or 0.0))

    async def _refused(self, account: PoolAccount, exc: OAuthError) -> Renewal:
        if exc.terminal:
            log.warning("account %s: refresh token refused, log in again: %s", account.id, exc.message)
            reason = f"OAuth refresh refused: {exc.message}"
            await self._pool.mark(account.id, "token_expired", until=None, reason=reason)
            return Renewal(None, expired=True)
        wait = exc.retry_after or RETRY_LATER
        retry_at = self._blocked_until[account.id] = time.time() + wait
        log.warning("account %s: OAuth refresh failed, retrying in %.0fs: %s", account.id, wait, exc.message)
        return Renewal(None, reason=f"{exc.message} (next try in {wait:.0f}s)", retry_at=retry_at)

    async def _adopt_stored(self, account: PoolAccount) -> Renewal:
        stored = await self._read(account.id)
        if stored is None:
            return Renewal(None)
        credentials, expires_at = stored
        token = credentials.get("access_token", "")
        if not token or token == account.credentials.get("access_token"):
            return Renewal(None)
        return Renewal(self._remember(account, token, expires_at))

    def _remember(self, account: PoolAccount, token: str, expires_at: float) -> PoolAccount:
        self._live[account.id] = LiveToken(token, expires_at)
        return replace(
            account,
            credentials={**account.credentials, "access_token": token},
            token_expires_at=expires_at,
        )

    # -- storage ---------------------------------------------------------------------------------

    async def _read(self, account_id: int) -> tuple[dict[str, str], float] | None:
        async with self._services.db.session() as session:
            row = (
                await session.execute(
                    select(Account.credentials_encrypted, Account.token_expires_at).where(
                        Account.id == account_id
                    )
                )
            ).first()
        if row is None:
            return None
        credentials = decrypt_credentials(self._services.secrets, row[0])
        return credentials, row[1].timestamp() if row[1] else 0.0

    async def _save(self, account_id: int, grant: TokenGrant) -> None:
        """Only the token fields change, merged into what is stored at this moment."""
        box = self._services.secrets
        async with self._services.db.transaction() as session:
            stored = await session.scalar(
                select(Account.credentials_encrypted).where(Account.id == account_id)
            )
            merged = {**decrypt_credentials(box, stored), **grant.credentials()}
            values: dict[str, object] = {"credentials_encrypted": encrypt_credentials(box, merged)}
            if grant.expires_at:
                values["token_expires_at"] = datetime.fromtimestamp(grant.expires_at, tz=UTC)
            values["updated_at"] = utcnow()
            await session.execute(update(Account).where(Account.id == account_id).values(**values))
        await bump_pool_version(self._services.state)

    # -- the background sweep ----------------------------------------------------------------------

    def start(self) -> None:
        self._loop.start()

    async def close(self) -> None:
        await self._loop.close()

    async def _sweep_forever(self) -> None:
        interval = self._services.settings.oauth_refresh_interval
        while True:
            try:
                await self.sweep()
            except Exception:  # a database hiccup must not end the sweeper
                log.exception("OAuth refresh sweep failed")
            await asyncio.sleep(interval)

    async def sweep(self) -> int:
        """Refresh every OAuth account whose token expires within the margin; returns how many."""
        await self._pool.fresh()
        deadline = time.time() + self._margin
        due = [
            self.current(a)
            for a in self._pool.accounts.values()
            if a.oauth and a.credentials.get("refresh_token") and a.token_expires_at
        ]
        refreshed = 0
        for account in due:
            if account.token_expires_at > deadline:
                continue
            renewal = await self.refresh(account, account.credentials.get("access_token", ""))
            refreshed += renewal.account is not None
        return refreshed
