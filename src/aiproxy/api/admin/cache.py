"""Admin: the live cache — sticky sessions, concurrency slots, accounts out of rotation — and its settings.

- `/api/admin/cache/*`: stats; sessions (list, drop one); accounts and users with live state;
  accounts out of rotation; clear by type; drop a user's or an API key's live state; the runtime
  configs that govern it (session lifetime, cooldowns).
- `/api/admin/accounts/:id/cache/*`: drop the sessions bound to an account; take it out of rotation
  for a while (`unavailable`) or bring it back; its concurrency (show, set the limit, reset).

Sessions and slots live in shared state and marks in the database (every instance reloads its
pool on the version bump), so what one instance shows or does holds on all of them. Client
session ids are never shown: a session is named `<api key id>.<digest>` (see
`gateway/live_state.py`).
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path
from pydantic import ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession

from ... import state_keys
from ...errors import BadRequest, NotFound
from ...gateway.live_state import SESSION_ID_PATTERN, LiveState
from ...runtime_configs import coerce, find_spec
from ...services import Services
from ...store import account_marks
from ...store import users as user_store
from ...store.accounts import bump_pool_version, commit_pool_change
from ...store.models import ApiKey
from ..audit import AuditedRoute
from ..cache_views import (
    account_live_view,
    accounts_by_id,
    held_view,
    key_owners,
    session_view,
    user_key_ids,
    user_live_view,
    users_by_id,
)
from ..deps import Paging, ServicesDep, SessionDep, admin_user
from ..envelope import FastJSONResponse, ok, page
from ..numbers import IdFilter, PathId
from ..pool_schemas import AccountConcurrency
from ..schemas import Body
from .accounts import get_account

router = APIRouter(
    prefix="/api/admin/cache",
    tags=["admin: cache"],
    route_class=AuditedRoute,
    dependencies=[Depends(admin_user)],
)
accounts_router = APIRouter(
    prefix="/api/admin/accounts",
    tags=["admin: cache"],
    route_class=AuditedRoute,
    dependencies=[Depends(admin_user)],
)
routers = (router, accounts_router)

# The runtime configs governing live state (`GET/PUT /cache/config`).
CACHE_CONFIGS = ("session_ttl", "rate_limit_cooldown", "overload_cooldown")
MAX_UNAVAILABLE = 30 * 86400

SessionId = Annotated[str, Path(pattern=SESSION_ID_PATTERN, description="`<api key id>.<digest>`, as listed")]


class ClearBody(Body):
    type: Literal["sessions", "users", "accounts", "unavailable", "all"]


class CacheConfigUpdate(Body):
    """Any of the three; an unknown field is refused rather than silently ignored."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    # Any JSON scalar, checked by the config's own spec (as `PUT /api/admin/configs` does).
    session_ttl: Any = Field(None, description="sticky-session lifetime in minutes (≥ 1)")
    rate_limit_cooldown: Any = Field(None, description="seconds an account rests after a 429 (≥ 1)")
    overload_cooldown: Any = Field(None, description="seconds an account rests after 529/503 (≥ 1)")


class UnavailableBody(Body):
    duration: int = Field(strict=True, ge=1, le=MAX_UNAVAILABLE, description="seconds")
    reason: str = Field("", max_length=200)


class ConcurrencyLimit(Body):
    limit: AccountConcurrency


def _live(services: Services) -> LiveState:
    return LiveState(services.state)


# -- /api/admin/cache ------------------------------------------------------------------------------


@router.get("/stats")
async def cache_stats(services: ServicesDep, session: SessionDep) -> FastJSONResponse:
    live = _live(services)
    bindings = await live.bindings()
    user_slots = await live.slots_in_use(state_keys.USER_SLOTS)
    account_slots = await live.slots_in_use(state_keys.ACCOUNT_SLOTS)
    owners = await key_owners(session, key_ids={b.key_id for b in bindings})
    users = set(user_slots) | {owners[b.key_id].user_id for b in bindings if b.key_id in owners}
    accounts = set(account_slots) | {b.account_id for b in bindings}
    held = await account_marks.held_accounts(session, now=datetime.now(UTC))
    return ok(
        {"sessions": len(bindings), "users": len(users), "accounts": len(accounts), "unavailable": len(held)}
    )


@router.get("/sessions")
async def list_sessions(
    services: ServicesDep,
    session: SessionDep,
    paging: Paging,
    api_key_id: IdFilter = None,
    account_id: IdFilter = None,
    user_id: IdFilter = None,
) -> FastJSONResponse:
    key_ids: set[int] | None = None
    if user_id is not None:
        key_ids = await user_key_ids(session, user_id=user_id)
    if api_key_id is not None:
        key_ids = {api_key_id} if key_ids is None else key_ids & {api_key_id}
    bindings = await _live(services).bindings(key_ids=key_ids, account_id=account_id)
    shown = bindings[paging.offset : paging.offset + paging.page_size]
    owners = await key_owners(session, key_ids={b.key_id for b in shown})
    accounts = await accounts_by_id(session, ids={b.account_id for b in shown})
    now = time.time()
    items = [session_view(b, owners.get(b.key_id), accounts.get(b.account_id), now) for b in shown]
    return page(items, total=len(bindings), page=paging.page, page_size=paging.page_size)


@router.delete("/sessions/{session_id}")
async def drop_session(session_id: SessionId, services: ServicesDep) -> FastJSONResponse:
    if not await _live(services).drop_session(session_id):
        raise NotFound("session not found")
    return ok({"session_id": session_id, "removed": True})


@router.get("/accounts")
async def live_accounts(services: ServicesDep, session: SessionDep) -> FastJSONResponse:
    """Every account with live state: slots in use, sessions bound, or out of rotation now."""
    live = _live(services)
    in_use = await live.slots_in_use(state_keys.ACCOUNT_SLOTS)
    bound = Counter(b.account_id for b in await live.bindings())
    held = {a.id for a in await account_marks.held_accounts(session, now=datetime.now(UTC))}
    ids = sorted(set(in_use) | set(bound) | held)
    rows = await accounts_by_id(session, ids=ids)
    return ok(
        [
            account_live_view(
                i, rows.get(i), in_use=in_use.get(i, 0), sessions=bound.get(i, 0), held=i in held
            )
            for i in ids
        ]
    )


@router.get("/users")
async def live_users(services: ServicesDep, session: SessionDep) -> FastJSONResponse:
    """Every user with live state: concurrency slots in use, or sessions bound by their keys."""
    live = _live(services)
    in_use = await live.slots_in_use(state_keys.USER_SLOTS)
    bindings = await live.bindings()
    owners = await key_owners(session, key_ids={b.key_id for b in bindings})
    bound = Counter(owners[b.key_id].user_id for b in bindings if b.key_id in owners)
    ids = sorted(set(in_use) | set(bound))
    rows = await users_by_id(session, ids=ids)
    return ok(
        [user_live_view(i, rows.get(i), in_use=in_use.get(i, 0), sessions=bound.get(i, 0)) for i in ids]
    )


@router.get("/unavailable")
async def unavailable_accounts(session: SessionDep) -> FastJSONResponse:
    """Enabled accounts a timed mark (an admin's `unavailable`, a cooldown) keeps out of rotation now."""
    now = datetime.now(UTC)
    return ok([held_view(a, now) for a in await account_marks.held_accounts(session, now=now)])


async def _lift_all(services: Services, session: AsyncSession) -> int:
    lifted = await account_marks.lift_all_marks(session)
    await session.commit()
    if lifted:
        await bump_pool_version(services.state)
    return lifted


@router.post("/clear")
async def clear_cache(body: ClearBody, services: ServicesDep, session: SessionDep) -> FastJSONResponse:
    """Drop one kind of live state (or all of it); answers how much of each went."""
    live = _live(services)
    everything = body.type == "all"
    cleared: dict[str, int] = {}
    if everything or body.type == "sessions":
        cleared["sessions"] = await live.drop_bindings()
    if everything or body.type == "users":
        reset = await live.reset_all_slots(state_keys.USER_SLOTS)
        cleared["users"], cleared["user_slots"] = reset.owners, reset.released
    if everything or body.type == "accounts":
        reset = await live.reset_all_slots(state_keys.ACCOUNT_SLOTS)
        cleared["accounts"], cleared["account_slots"] = reset.owners, reset.released
    if everything or body.type == "unavailable":
        cleared["unavailable"] = await _lift_all(services, session)
    return ok({"type": body.type, "cleared": cleared})


@router.delete("/users/{user_id}")
async def clear_user(user_id: PathId, services: ServicesDep, session: SessionDep) -> FastJSONResponse:
    """The user's sessions (those of every key of theirs) and concurrency slots."""
    user = await user_store.get_user(session, user_id)
    live = _live(services)
    sessions = await live.drop_bindings(key_ids=await user_key_ids(session, user_id=user.id))
    released = await live.reset_user_slots(user.id)
    return ok({"user_id": user.id, "sessions": sessions, "released": released})


@router.delete("/api-keys/{key_id}")
async def clear_api_key(key_id: PathId, services: ServicesDep, session: SessionDep) -> FastJSONResponse:
    if await session.get(ApiKey, key_id) is None:
        raise NotFound("API Key 不存在")
    sessions = await _live(services).drop_bindings(key_ids={key_id})
    return ok({"api_key_id": key_id, "sessions": sessions})


def _cache_config(services: Services) -> dict[str, Any]:
    return {key: services.configs.get(key) for key in CACHE_CONFIGS}


@router.get("/config")
async def cache_config(services: ServicesDep) -> FastJSONResponse:
    return ok(_cache_config(services))


@router.put("/config")
async def update_cache_config(body: CacheConfigUpdate, services: ServicesDep) -> FastJSONResponse:
    """Change any of the three; all are checked before any is saved. New bindings and cooldowns
    follow the new values; those already made keep theirs."""
    changes = body.model_dump(exclude_unset=True)
    for key, raw in changes.items():
        coerce(find_spec(key), raw)
    for key, raw in changes.items():
        await services.configs.set(key, raw)
    return ok(_cache_config(services))


# -- /api/admin/accounts/:id/cache -----------------------------------------------------------------


@accounts_router.delete("/{account_id}/cache/sessions")
async def drop_account_sessions(
    account_id: PathId, services: ServicesDep, session: SessionDep
) -> FastJSONResponse:
    """Every session bound to the account: each picks an account afresh on its next request."""
    account = await get_account(session, account_id)
    sessions = await _live(services).drop_bindings(account_id=account.id)
    return ok({"account_id": account.id, "sessions": sessions})


@accounts_router.post("/{account_id}/cache/unavailable")
async def mark_unavailable(
    account_id: PathId, body: UnavailableBody, services: ServicesDep, session: SessionDep
) -> FastJSONResponse:
    """Out of rotation for `duration` seconds; back by itself afterwards (or by the DELETE)."""
    account = await get_account(session, account_id)
    if account.status in account_marks.NEEDS_AN_ADMIN:
        # The mark's end would bring it back into rotation with the problem unsolved.
        raise BadRequest(f"account is {account.status}: fix it first (its status stays until then)")
    until = datetime.now(UTC) + timedelta(seconds=body.duration)
    reason = body.reason or account_marks.DEFAULT_REASON
    await account_marks.mark_unavailable(session, account_id=account.id, until=until, reason=reason)
    await commit_pool_change(session, services.state)
    return ok(
        {"account_id": account.id, "status": account_marks.UNAVAILABLE, "reason": reason, "until": until}
    )


@accounts_router.delete("/{account_id}/cache/unavailable")
async def lift_unavailable(
    account_id: PathId, services: ServicesDep, session: SessionDep
) -> FastJSONResponse:
    """Back to `valid` at once from a timed mark (`unavailable`, or a cooldown); a no-op otherwise."""
    account = await get_account(session, account_id)
    lifted = await account_marks.lift_mark(session, account_id=account.id)
    await session.commit()
    if lifted:
        await bump_pool_version(services.state)
    return ok({"account_id": account.id, "status": "valid" if lifted else account.status, "cleared": lifted})


@accounts_router.get("/{account_id}/cache/concurrency")
async def account_concurrency(
    account_id: PathId, services: ServicesDep, session: SessionDep
) -> FastJSONResponse:
    account = await get_account(session, account_id)
    current, holders = await _live(services).account_slots(account.id)
    return ok(
        {
            "account_id": account.id,
            "current": current,
            "max_concurrency": account.max_concurrency,
            "holders": holders,
        }
    )


@accounts_router.put("/{account_id}/cache/concurrency")
async def set_account_concurrency(
    account_id: PathId, body: ConcurrencyLimit, services: ServicesDep, session: SessionDep
) -> FastJSONResponse:
    """The account's `max_concurrency` (0 = unlimited); requests already running keep their slots."""
    account = await get_account(session, account_id)
    account.max_concurrency = body.limit
    await commit_pool_change(session, services.state)
    current, _ = await _live(services).account_slots(account.id)
    return ok({"account_id": account.id, "current": current, "max_concurrency": account.max_concurrency})


@accounts_router.delete("/{account_id}/cache/concurrency")
async def reset_account_concurrency(
    account_id: PathId, services: ServicesDep, session: SessionDep
) -> FastJSONResponse:
    account = await get_account(session, account_id)
    released = await _live(services).reset_account_slots(account.id)
    return ok({"account_id": account.id, "released": released})
