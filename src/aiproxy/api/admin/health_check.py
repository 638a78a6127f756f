"""Admin: account health checks (`gateway/health.py`) and forced OAuth token refreshes.

- `POST /api/admin/accounts/:id/health-check`: probe one account now and apply the result.
- `POST /api/admin/accounts/:id/refresh-token`: one OAuth refresh of that account now.
- `GET /api/admin/health-check/status`: the checker's settings, last sweep and every account's last check.
- `POST /api/admin/health-check/trigger`: one sweep now, answered when it is done.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Request
from sqlalchemy import select, update

from ...errors import BadRequest, NotFound
from ...security.secretbox import SecretBoxError
from ...services import Services
from ...store.accounts import ACCOUNT_TYPES, bump_pool_version, decrypt_credentials
from ...store.models import Account
from ..audit import AuditedRoute
from ..deps import ServicesDep, admin_user
from ..envelope import FastJSONResponse, ok
from ..numbers import PathId
from ..openapi import error_responses

accounts_router = APIRouter(
    prefix="/api/admin/accounts",
    tags=["admin: health checks"],
    route_class=AuditedRoute,
    dependencies=[Depends(admin_user)],
)
router = APIRouter(
    prefix="/api/admin/health-check",
    tags=["admin: health checks"],
    route_class=AuditedRoute,
    dependencies=[Depends(admin_user)],
)
routers = (accounts_router, router)


@accounts_router.post("/{account_id}/health-check")
async def check_account(account_id: PathId, request: Request) -> FastJSONResponse:
    """Probe the account now; a success brings a rate-limited, overloaded or invalid account back."""
    return ok(await request.app.state.gateway.health.check(account_id))


@router.get("/status")
async def health_status(request: Request) -> FastJSONResponse:
    return ok(await request.app.state.gateway.health.status())


@router.post("/trigger", responses=error_responses(409))  # a sweep is already running
async def trigger_sweep(request: Request) -> FastJSONResponse:
    return ok(await request.app.state.gateway.health.sweep(trigger="manual"))


# -- forced OAuth refresh ---------------------------------------------------------------------------


async def _account_row(services: Services, account_id: int) -> Account:
    async with services.db.session() as session:
        row = await session.get(Account, account_id)
    if row is None:
        raise NotFound("account not found")
    return row


@accounts_router.post("/{account_id}/refresh-token")
async def refresh_token(account_id: PathId, request: Request, services: ServicesDep) -> FastJSONResponse:
    """Refresh the account's OAuth access token now, whatever its expiry.

    400 (like the other OAuth admin routes, for every provider failure) for an account without
    OAuth tokens or without a refresh token, a disabled account, a refresh token the vendor refused
    (the account is then `token_expired`), or a token endpoint that failed for a passing reason
    (the current token keeps serving and the background refresher tries again).
    """
    row = await _account_row(services, account_id)
    kind = ACCOUNT_TYPES.get(row.type)
    try:
        credentials = decrypt_credentials(services.secrets, row.credentials_encrypted)
    except (SecretBoxError, ValueError):
        raise BadRequest(
            f"account {row.name}: its credentials cannot be read with the configured key"
        ) from None
    if kind is None or not kind.uses_oauth(credentials):
        raise BadRequest(f"account {row.name} does not use OAuth: it has no token to refresh")
    if not credentials.get("refresh_token"):
        raise BadRequest(
            f"account {row.name} has no refresh token (a setup token cannot be refreshed): log in again"
        )
    if not row.enabled:
        raise BadRequest(f"account {row.name} is disabled: enable it to refresh its token")
    gateway = request.app.state.gateway
    pool, tokens = gateway.pool, gateway.tokens
    await pool.fresh()
    account = pool.accounts.get(account_id)
    if account is None:  # enabled a moment ago: this instance has not reloaded yet
        await pool.reload()
        account = pool.accounts.get(account_id)
    if account is None:
        raise BadRequest(f"account {row.name} cannot be served: check its type and credentials")
    account = tokens.current(account)
    used = account.credentials.get("access_token", "")
    renewal = await tokens.refresh(account, used, forced=True, by_admin=True)
    if renewal.expired:
        refused = await _account_row(services, account_id)
        raise BadRequest(
            f"account {row.name}: {refused.status_reason or 'the refresh token was refused'}; "
            "the account is now token_expired: log in again"
        )
    if renewal.account is None:
        why = renewal.reason or "a refresh by another instance is under way"
        raise BadRequest(
            f"account {row.name}: no new token this time ({why}); the current token keeps serving "
            "and the refresher tries again later"
        )
    status = row.status
    if status == "token_expired":  # the refresh token works after all: back in rotation
        async with services.db.transaction() as session:
            await session.execute(
                update(Account)
                .where(Account.id == account_id, Account.status == "token_expired")
                .values(status="valid", status_reason="OAuth token refreshed by an admin")
            )
        await bump_pool_version(services.state)
    async with services.db.session() as session:
        stored = (
            await session.execute(
                select(Account.status, Account.token_expires_at).where(Account.id == account_id)
            )
        ).first()
    if stored is None:  # deleted meanwhile
        raise NotFound("account not found")
    expires = renewal.account.token_expires_at
    return ok(
        {
            "account_id": account_id,
            "refreshed": True,
            "token_expires_at": stored[1] or (datetime.fromtimestamp(expires, UTC) if expires else None),
            "status": stored[0],
        }
    )
