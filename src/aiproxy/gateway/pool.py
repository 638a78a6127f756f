"""The account pool as the gateway sees it: an in-memory snapshot, reloaded when it changes.

Admin writes and account status changes bump `POOL_VERSION` in shared state. Each
instance compares versions (on every request with in-process state, every half second
with Redis) and reloads the whole snapshot when they differ: pools are small, reloads
are rare, and the hot path then reads plain Python objects.

Without shared state the last snapshot keeps serving (this instance's own status marks still
apply locally and go to the database); once the version can be read again the pool reloads
once, whatever the version says, to catch up with changes it could not hear about, and
announces the marks it could not announce.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from ..security.secretbox import SecretBox, SecretBoxError
from ..store.account_marks import ended_at
from ..store.accounts import (
    ACCOUNT_TYPES,
    POOL_VERSION,
    TIMED_STATUSES,
    bump_pool_version,
    decrypt_credentials,
)
from ..store.db import Database
from ..store.error_rules import ErrorRuleSpec, rule_spec
from ..store.models import Account, AccountGroup, AccountGroupMember, ErrorMessage, ErrorRule, ProxyConfig
from ..store.models.base import utcnow
from ..store.proxies import proxy_url
from ..store.state import SharedState, StateUnavailable, warn_unavailable

log = logging.getLogger(__name__)

USABLE = "valid"


@dataclass(frozen=True, slots=True)
class PoolAccount:
    id: int
    name: str
    type: str
    family: str
    status: str
    cooldown_until: float  # epoch seconds; 0 = none
    priority: int
    weight: int
    max_concurrency: int
    base_url: str
    credentials: dict[str, str]
    api_version: str
    deployment: str
    organization_id: str
    model_mapping: dict[str, str]
    allowed_models: frozenset[str] | None
    proxy_url: str | None
    groups: frozenset[int]
    region: str = ""
    oauth: bool = False  # authenticates with OAuth tokens (see gateway/tokens.py), not a key
    token_expires_at: float = 0.0  # epoch seconds of the stored access token; 0 = unknown
    extra: dict[str, Any] = field(default_factory=dict)  # non-secret per-account facts (OAuth ids)

    def usable(self, now: float) -> bool:
        """Status usable, or a timed mark (a cooldown, an admin's `unavailable`) that has ended."""
        if self.status == USABLE:
            return True
        return self.status in TIMED_STATUSES and self.cooldown_until and now >= self.cooldown_until

    def upstream_model(self, model: str) -> str | None:
        """The model name to send upstream, or None when this account cannot serve `model`."""
        mapped = self.model_mapping.get(model)
        if mapped:
            return mapped
        if self.allowed_models is not None and model not in self.allowed_models:
            return None
        return model


@dataclass(frozen=True, slots=True)
class ErrorMessageSpec:
    status_code: int
    keyword: str
    message: str


def _epoch(value: datetime | None) -> float:
    return value.timestamp() if value else 0.0


def _snapshot(
    row: Account, box: SecretBox, proxies: dict[int, str], default_proxy: str | None, groups: frozenset[int]
) -> PoolAccount | None:
    kind = ACCOUNT_TYPES.get(row.type)
    if kind is None:
        return None
    try:
        credentials = decrypt_credentials(box, row.credentials_encrypted)
    except SecretBoxError:
        log.error("account %s: credentials cannot be decrypted with the configured secret key", row.id)
        return None
    cooldown = max(_epoch(row.rate_limited_until), _epoch(row.overloaded_until))
    allowed = frozenset(m.strip() for m in row.allowed_models.split(",") if m.strip())
    return PoolAccount(
        id=row.id,
        name=row.name,
        type=row.type,
        family=kind.family,
        status=row.status,
        cooldown_until=cooldown,
        priority=max(1, row.priority),
        weight=max(1, row.weight),
        max_concurrency=row.max_concurrency,
        base_url=(row.base_url or kind.default_base_url).rstrip("/"),
        credentials=credentials,
        api_version=row.api_version,
        deployment=row.deployment,
        organization_id=row.organization_id,
        model_mapping={str(k): str(v) for k, v in (row.model_mapping or {}).items()},
        allowed_models=allowed or None,
        # An account without its own proxy uses the default one; a disabled proxy means direct.
        proxy_url=proxies.get(row.proxy_config_id) if row.proxy_config_id else default_proxy,
        groups=groups,
        region=row.region,
        oauth=kind.uses_oauth(credentials),
        token_expires_at=_epoch(row.token_expires_at),
        extra=dict(row.extra or {}),
    )


class AccountPool:
    def __init__(self, db: Database, state: SharedState, box: SecretBox) -> None:
        self._db = db
        self._state = state
        self._box = box
        self._check_interval = 0.0 if state.kind == "memory" else 0.5
        self._checked_at = 0.0
        self._refresh: asyncio.Future[None] | None = None
        self._missed_version = False  # a version check failed: reload once state answers again
        self._unannounced = False  # a status mark could not bump the shared version
        self.version = -1
        self.accounts: dict[int, PoolAccount] = {}
        self.default_group_id: int | None = None
        self.error_rules: tuple[ErrorRuleSpec, ...] = ()
        self.error_messages: tuple[ErrorMessageSpec, ...] = ()

    async def fresh(self) -> AccountPool:
        """This pool, reloaded first if another writer changed it.

        In-process state answers without suspending, so the version is read inline on every
        request. With Redis the read is a round trip, made at most every half second and shared:
        requests arriving while a check is under way wait for it instead of using an older snapshot.
        """
        if self._refresh is None:
            if self._check_interval == 0.0:
                if await self._state.get_int(POOL_VERSION) == self.version:
                    return self
            elif time.monotonic() - self._checked_at < self._check_interval:
                return self
            self._refresh = asyncio.ensure_future(self._check())
            self._refresh.add_done_callback(self._refresh_done)
        await asyncio.shield(self._refresh)
        return self

    def _refresh_done(self, _future: asyncio.Future[None]) -> None:
        self._refresh = None

    async def _check(self) -> None:
        try:
            if self._unannounced and await bump_pool_version(self._state):
                self._unannounced = False
            version = await self._state.get_int(POOL_VERSION)
            if version != self.version or self._missed_version:
                await self.reload(version)
                self._missed_version = False
        except StateUnavailable as exc:  # keep serving the last good snapshot
            self._missed_version = True
            warn_unavailable(log, "account pool served from its last snapshot", exc)
        except Exception:  # same for a database hiccup, but that one deserves its traceback
            log.exception("account pool refresh failed")
        self._checked_at = time.monotonic()

    async def reload_now(self) -> None:
        """Reload whatever the version says: the database changed behind the relay's back (a sync).

        It takes the place of the one refresh that requests share, after any check under way (that
        one may have read the database before the change): requests arriving meanwhile wait for it
        as they wait for a check, and carry on with the last snapshot if it fails. Only the caller
        learns of a failure."""
        while self._refresh is not None:
            await asyncio.shield(self._refresh)
        failures: list[Exception] = []

        async def reload() -> None:
            try:
                await self.reload()
            except Exception as exc:
                failures.append(exc)

        self._refresh = asyncio.ensure_future(reload())
        self._refresh.add_done_callback(self._refresh_done)
        await asyncio.shield(self._refresh)
        if failures:
            raise failures[0]

    async def reload(self, version: int | None = None) -> None:
        if version is None:
            version = await self._state.get_int(POOL_VERSION)
        async with self._db.session() as session:
            rows = list(await session.scalars(select(Account).where(Account.enabled.is_(True))))
            members = (
                await session.execute(select(AccountGroupMember.account_id, AccountGroupMember.group_id))
            ).all()
            default_group = await session.scalar(
                select(AccountGroup.id).where(AccountGroup.is_default.is_(True))
            )
            enabled_proxies = list(
                await session.scalars(select(ProxyConfig).where(ProxyConfig.enabled.is_(True)))
            )
            proxies = {p.id: proxy_url(p, self._box) for p in enabled_proxies}
            default_proxy = next((proxies[p.id] for p in enabled_proxies if p.is_default), None)
            rules = [
                rule_spec(r)
                for r in await session.scalars(select(ErrorRule).where(ErrorRule.enabled.is_(True)))
            ]
            messages = [
                ErrorMessageSpec(m.status_code, m.keyword.lower(), m.message)
                for m in await session.scalars(select(ErrorMessage).where(ErrorMessage.enabled.is_(True)))
            ]
        groups: dict[int, set[int]] = {}
        for account_id, group_id in members:
            groups.setdefault(account_id, set()).add(group_id)
        accounts = {}
        for row in rows:
            snap = _snapshot(row, self._box, proxies, default_proxy, frozenset(groups.get(row.id, ())))
            if snap is not None:
                accounts[row.id] = snap
        self.accounts = accounts
        self.default_group_id = default_group
        self.error_rules = tuple(sorted(rules, key=lambda r: -r.priority))
        self.error_messages = tuple(messages)
        self.version = version

    async def mark(self, account_id: int, status: str, *, until: float | None, reason: str) -> None:
        """Move an account to a new status: locally at once, in the database, then tell the others."""
        current = self.accounts.get(account_id)
        if current is not None:
            self.accounts[account_id] = replace(current, status=status, cooldown_until=until or 0.0)
        values: dict[str, Any] = {
            "status": status,
            "status_reason": reason[:500],
            "last_error": reason[:2000],
            "last_error_at": utcnow(),
            "rate_limited_until": None,
            "overloaded_until": None,
        }
        if until:
            stamp = datetime.fromtimestamp(until, tz=utcnow().tzinfo)
            values["rate_limited_until" if status == "rate_limited" else "overloaded_until"] = stamp
        async with self._db.transaction() as session:
            await session.execute(update(Account).where(Account.id == account_id).values(**values))
        await self._announce()

    async def recover(self, account_id: int) -> None:
        """Back to `valid` after a timed mark that ended by itself; the last error stays for the record.

        Only a mark that has ended is lifted in the database: one set since (an admin's, or another
        instance's after an error) stays, and the reload the version bump causes shows it here too.
        """
        current = self.accounts.get(account_id)
        if current is not None:
            self.accounts[account_id] = replace(current, status=USABLE, cooldown_until=0.0)
        async with self._db.transaction() as session:
            await session.execute(
                update(Account)
                .where(Account.id == account_id, ended_at(utcnow()))
                .values(status=USABLE, status_reason="", rate_limited_until=None, overloaded_until=None)
            )
        await self._announce()

    async def _announce(self) -> None:
        """Tell the other instances to reload; without shared state, tell them once it is back."""
        if not await bump_pool_version(self._state):
            self._unannounced = True

    def custom_message(self, status: int, body_text: str) -> str | None:
        lowered = body_text.lower()
        for spec in self.error_messages:
            if spec.status_code in (0, status) and (not spec.keyword or spec.keyword in lowered):
                return spec.message
        return None
