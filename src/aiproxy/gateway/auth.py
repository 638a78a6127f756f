"""Who is calling: the API key from the request, resolved to a cached snapshot of key and owner.

Snapshots live for a few seconds at most, and every change to a key or user through the
API bumps a shared version that empties the cache (checked on every request with
in-process state, every half second with Redis): a disabled key stops working at once on
this instance and within a second on the others, without a database read per request.
Unknown keys are cached too, so a client hammering with a wrong key does not hammer the
database. A sync (`POST /api/admin/configs/sync/trigger`, after a change made straight in the
database) empties it on every worker of every instance (`forget_all`).

One read per key at a time: requests that find no usable snapshot wait for the read already
under way instead of starting their own (with 64 requests in flight, an expiring snapshot
used to send dozens of identical reads to the database, each delaying the next). A snapshot
in the last fifth of its life is served while one request refreshes it, so a busy key never
waits for its reload at all.

When the shared state cannot be read, the cache keeps serving: snapshots still expire after
SNAPSHOT_TTL and are reloaded from the database, so a key disabled during the outage stops
working within that time on every instance, only not at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

from sqlalchemy import and_, or_, select

from ..security.api_keys import hash_api_key
from ..store.db import Database
from ..store.models import ApiKey, Package, User, UserPackage
from ..store.state import SharedState, StateUnavailable, warn_unavailable
from ..store.users import CALLERS_VERSION

log = logging.getLogger(__name__)

SNAPSHOT_TTL = 5.0
REFRESH_AFTER = SNAPSHOT_TTL * 0.8  # from here on a request refreshes the snapshot while others use it
MAX_CACHED = 100_000
_SERVING_SNAPSHOTS = (
    f"API keys served from cached snapshots (reloaded from the database every {SNAPSHOT_TTL:g} s)"
)


@dataclass(frozen=True, slots=True)
class Grant:
    """One package a user holds (a user package with its package's rules), as admission reads it."""

    id: int
    status: str
    start: float  # epoch seconds: its daily windows count from here
    end: float
    token_quota: int  # 0: no cap
    cost_quota: float  # dollars, 0: no cap
    daily_limit: int
    rate_limit: int
    allowed_platforms: frozenset[str] | None  # None = all
    allowed_models: frozenset[str] | None
    allowed_clients: frozenset[str] | None


@dataclass(frozen=True, slots=True)
class Caller:
    key_id: int
    user_id: int
    username: str
    key_status: str
    user_status: str
    expires_at: float | None
    allowed_platforms: frozenset[str] | None  # None = all
    allowed_models: frozenset[str] | None  # None = all
    rate_limit: int
    daily_limit: int
    monthly_quota: float
    key_price_rate: float
    user_price_rate: float
    user_max_concurrency: int
    account_group_id: int | None
    # Packages: the one the key is bound to (in any state), else the user's active ones by end time.
    bound_package: Grant | None = None
    packages: tuple[Grant, ...] = ()
    allowed_clients: frozenset[str] | None = None  # client type names; None = any client
    # Whether a package the user may pay with limits clients (then the client is identified).
    package_clients: bool = False


def _csv_set(value: str, *, all_word: str | None = None) -> frozenset[str] | None:
    items = frozenset(item.strip() for item in value.split(",") if item.strip())
    if not items or (all_word is not None and all_word in items):
        return None
    return items


def key_from_headers(headers: dict[bytes, bytes], query_key: str | None) -> str | None:
    """The caller's key from any of the header forms clients use (and `?key=` on Gemini paths)."""
    auth = headers.get(b"authorization")
    if auth:
        scheme, _, token = auth.decode("latin-1").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    for name in (b"x-api-key", b"x-goog-api-key", b"api-key"):
        value = headers.get(name)
        if value:
            return value.decode("latin-1").strip()
    return query_key


class KeyCache:
    def __init__(self, db: Database, state: SharedState) -> None:
        self._db = db
        self._state = state
        self._entries: dict[str, tuple[float, Caller | None]] = {}
        self._loading: dict[str, asyncio.Future[Caller | None]] = {}  # digest -> the read under way
        self._version = -1
        self._checked_at = 0.0
        self._check_interval = 0.0 if state.kind == "memory" else 0.5

    async def resolve(self, raw_key: str) -> Caller | None:
        digest = hash_api_key(raw_key)
        now = time.monotonic()
        if now - self._checked_at >= self._check_interval:
            self._checked_at = now
            try:
                version = await self._state.get_int(CALLERS_VERSION)
            except StateUnavailable as exc:
                warn_unavailable(log, _SERVING_SNAPSHOTS, exc)
            else:
                if version != self._version:
                    self._entries.clear()
                    self._loading.clear()  # reads begun before the change must not be joined
                    self._version = version
        entry = self._entries.get(digest)
        if entry is not None:
            age = now - entry[0]
            if age < REFRESH_AFTER:
                return entry[1]
            if age < SNAPSHOT_TTL:
                if digest not in self._loading:
                    self._start_load(digest, now)
                return entry[1]
        loading = self._loading.get(digest) or self._start_load(digest, now)
        # Shielded: a waiter whose client goes away must not cancel the read the others wait for.
        return await asyncio.shield(loading)

    def forget_all(self) -> None:
        """Drop every snapshot and every read under way (a sync: the database changed behind the
        relay's back); each key's next request reads the database again."""
        self._entries.clear()
        self._loading.clear()

    def _start_load(self, digest: str, now: float) -> asyncio.Future[Caller | None]:
        loading = asyncio.ensure_future(self._load(digest))
        self._loading[digest] = loading
        loading.add_done_callback(partial(self._loaded, digest, now, self._version))
        return loading

    def _loaded(
        self, digest: str, started: float, version: int, loading: asyncio.Future[Caller | None]
    ) -> None:
        dropped = self._loading.get(digest) is not loading  # by a version change or `forget_all`
        if not dropped:
            del self._loading[digest]
        if loading.cancelled():
            return
        if (exc := loading.exception()) is not None:
            # Waiters get the error too; a refresh nobody waited for would otherwise go unseen.
            # The class only: a driver's message can quote the statement's parameters (the key's hash).
            log.warning("API key snapshot could not be loaded: %s", type(exc).__name__)
            return
        if dropped or version != self._version:
            return  # the cache was emptied while this read ran: its answer may predate the change
        if len(self._entries) >= MAX_CACHED:
            self._entries.clear()
        # Aged from when the read began: a snapshot is never older than SNAPSHOT_TTL says.
        self._entries[digest] = (started, loading.result())

    async def _load(self, digest: str) -> Caller | None:
        async with self._db.session() as session:
            row = (
                await session.execute(
                    select(ApiKey, User)
                    .join(User, User.id == ApiKey.user_id)
                    .where(ApiKey.key_hash == digest)
                )
            ).first()
        if row is None:
            return None
        key, user = row
        bound, packages = await self._grants(user.id, key.user_package_id)
        return Caller(
            key_id=key.id,
            user_id=user.id,
            username=user.username,
            key_status=key.status,
            user_status=user.status,
            expires_at=key.expires_at.timestamp() if key.expires_at else None,
            allowed_platforms=_csv_set(key.allowed_platforms, all_word="all"),
            allowed_models=_csv_set(key.allowed_models),
            rate_limit=key.rate_limit,
            daily_limit=key.daily_limit,
            monthly_quota=key.monthly_quota,
            key_price_rate=key.price_rate,
            user_price_rate=user.price_rate,
            user_max_concurrency=user.max_concurrency,
            account_group_id=key.account_group_id or user.account_group_id,
            bound_package=bound,
            packages=packages,
            allowed_clients=_csv_set(key.allowed_clients),
            package_clients=any(g.allowed_clients is not None for g in (bound, *packages) if g is not None),
        )

    async def _grants(self, user_id: int, bound_id: int | None) -> tuple[Grant | None, tuple[Grant, ...]]:
        now = datetime.now(UTC)
        live = and_(UserPackage.status == "active", UserPackage.end_time > now)
        async with self._db.session() as session:
            rows = (
                await session.execute(
                    select(UserPackage, Package)
                    .outerjoin(Package, Package.id == UserPackage.package_id)
                    .where(
                        UserPackage.user_id == user_id,
                        or_(live, UserPackage.id == bound_id) if bound_id else live,
                    )
                    .order_by(UserPackage.end_time, UserPackage.id)
                )
            ).all()
            grants = [_grant(held, package) for held, package in rows]
        bound = next((g for g in grants if g.id == bound_id), None)
        return bound, tuple(g for g in grants if g.status == "active" and g.end > now.timestamp())


def _grant(held: UserPackage, package: Package | None) -> Grant:
    return Grant(
        id=held.id,
        status=held.status,
        start=held.start_time.timestamp(),
        end=held.end_time.timestamp(),
        token_quota=held.token_quota,
        cost_quota=held.cost_quota,
        daily_limit=held.daily_limit,
        rate_limit=package.rate_limit if package else 0,
        allowed_platforms=_csv_set(package.allowed_platforms, all_word="all") if package else None,
        allowed_models=_csv_set(package.allowed_models) if package else None,
        allowed_clients=_csv_set(package.allowed_clients) if package else None,
    )
