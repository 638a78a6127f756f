"""Admin: upstream accounts (credentials encrypted at rest, masked in every answer)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ...errors import BadRequest, NotFound
from ...gateway.quotas import read_quota
from ...security.secretbox import SecretBox, SecretBoxError
from ...services import Services
from ...store.accounts import (
    ACCOUNT_STATUSES,
    ACCOUNT_TYPES,
    commit_pool_change,
    decrypt_credentials,
    encrypt_credentials,
)
from ...store.models import Account, AccountGroup, AccountGroupMember, ProxyConfig
from ..audit import AuditedRoute
from ..deps import Paging, ServicesDep, SessionDep, admin_user
from ..envelope import FastJSONResponse, created, ok, page
from ..numbers import IdFilter, PathId
from ..pool_schemas import AccountCreate, AccountStatusBody, AccountUpdate
from ..pool_views import account_view

router = APIRouter(
    prefix="/api/admin/accounts",
    tags=["admin: accounts"],
    route_class=AuditedRoute,
    dependencies=[Depends(admin_user)],
)


async def get_account(session: AsyncSession, account_id: int) -> Account:
    account = await session.get(Account, account_id)
    if account is None:
        raise NotFound("account not found")
    return account


async def group_ids_of(session: AsyncSession, account_ids: Iterable[int]) -> dict[int, list[int]]:
    """{account id: [group ids]} in one query, for a page of accounts."""
    ids = list(account_ids)
    found: dict[int, list[int]] = defaultdict(list)
    if ids:
        rows = await session.execute(
            select(AccountGroupMember.account_id, AccountGroupMember.group_id).where(
                AccountGroupMember.account_id.in_(ids)
            )
        )
        for account_id, group_id in rows:
            found[account_id].append(group_id)
    return found


async def _check_refs(session: AsyncSession, proxy_id: int | None, group_ids: list[int] | None) -> None:
    if proxy_id is not None and await session.get(ProxyConfig, proxy_id) is None:
        raise BadRequest("proxy_config_id: proxy config not found")
    if group_ids:
        known = set(await session.scalars(select(AccountGroup.id).where(AccountGroup.id.in_(group_ids))))
        missing = [gid for gid in group_ids if gid not in known]
        if missing:
            raise BadRequest(f"group_ids: account group {missing[0]} not found")


async def _set_groups(session: AsyncSession, account_id: int, group_ids: list[int]) -> None:
    wanted = set(group_ids)
    current = set(
        await session.scalars(
            select(AccountGroupMember.group_id).where(AccountGroupMember.account_id == account_id)
        )
    )
    if current - wanted:
        await session.execute(
            delete(AccountGroupMember).where(
                AccountGroupMember.account_id == account_id,
                AccountGroupMember.group_id.in_(current - wanted),
            )
        )
    session.add_all(AccountGroupMember(group_id=gid, account_id=account_id) for gid in wanted - current)


def _check_complete(account: Account, credentials: dict[str, str] | None) -> None:
    """One of the type's credential sets (when known) and the settings it needs are present."""
    kind = ACCOUNT_TYPES[account.type]
    if credentials is not None:
        missing = kind.missing(credentials)
        if missing:
            raise BadRequest(f"{missing[0]}: required for {account.type} accounts")
    for name in kind.settings:
        if not getattr(account, name):
            label = "endpoint" if name == "base_url" else name
            raise BadRequest(f"{label}: required for {account.type} accounts")


def _stored_credentials(box: SecretBox, account: Account) -> dict[str, str] | None:
    """The decrypted credentials, or None when they cannot be read (the secret key changed)."""
    try:
        return decrypt_credentials(box, account.credentials_encrypted)
    except (SecretBoxError, ValueError):
        return None


async def _view(session: AsyncSession, services: Services, account: Account) -> dict[str, object]:
    groups = await group_ids_of(session, [account.id])
    return account_view(account, services.secrets, groups.get(account.id, []))


STATUS_PATTERN = f"^({'|'.join(ACCOUNT_STATUSES)})$"


@router.get("/types")
async def account_types() -> FastJSONResponse:
    return ok(list(ACCOUNT_TYPES))


@router.get("")
async def list_accounts(
    session: SessionDep,
    services: ServicesDep,
    paging: Paging,
    type: Annotated[str | None, Query(max_length=32)] = None,
    status: Annotated[str | None, Query(pattern=STATUS_PATTERN)] = None,
    enabled: bool | None = None,
    keyword: Annotated[str | None, Query(max_length=100)] = None,
    group_id: IdFilter = None,
) -> FastJSONResponse:
    conditions = []
    if type:
        conditions.append(Account.type == type)
    if status:
        conditions.append(Account.status == status)
    if enabled is not None:
        conditions.append(Account.enabled.is_(enabled))
    if keyword:
        conditions.append(Account.name.ilike(f"%{keyword}%"))
    if group_id is not None:
        members = select(AccountGroupMember.account_id).where(AccountGroupMember.group_id == group_id)
        conditions.append(Account.id.in_(members))
    total = await session.scalar(select(func.count()).select_from(Account).where(*conditions))
    accounts = list(
        await session.scalars(
            select(Account)
            .where(*conditions)
            .order_by(Account.id)
            .offset(paging.offset)
            .limit(paging.page_size)
        )
    )
    groups = await group_ids_of(session, [a.id for a in accounts])
    items = [account_view(a, services.secrets, groups.get(a.id, [])) for a in accounts]
    return page(items, total=int(total or 0), page=paging.page, page_size=paging.page_size)


@router.post("", status_code=201)
async def create_account(body: AccountCreate, services: ServicesDep, session: SessionDep) -> FastJSONResponse:
    columns = body.columns()
    await _check_refs(session, body.proxy_config_id, body.group_ids)
    account = Account(**columns)
    credentials = body.credentials()
    _check_complete(account, credentials)
    account.credentials_encrypted = encrypt_credentials(services.secrets, credentials)
    session.add(account)
    await session.flush()
    if body.group_ids:
        await _set_groups(session, account.id, body.group_ids)
    await commit_pool_change(session, services.state)
    return created(await _view(session, services, account))


@router.get("/{account_id}")
async def get_account_route(
    account_id: PathId, services: ServicesDep, session: SessionDep
) -> FastJSONResponse:
    view = await _view(session, services, await get_account(session, account_id))
    # What the upstream last said about the plan's windows (subscription accounts).
    view["quota"] = await read_quota(services.state, account_id)
    return ok(view)


def _apply_credentials(box: SecretBox, account: Account, body: AccountUpdate) -> dict[str, str] | None:
    """Merge sent credentials into the stored ones; None when nothing about them changed."""
    sent = body.credentials()
    if not sent and not body.clear_credentials:
        return None
    # Unreadable old credentials (changed secret key) are replaced by what is sent now.
    merged = {**(_stored_credentials(box, account) or {}), **sent}
    for name in body.clear_credentials:
        merged.pop(name, None)
    account.credentials_encrypted = encrypt_credentials(box, merged)
    return merged


@router.put("/{account_id}")
async def update_account(
    account_id: PathId, body: AccountUpdate, services: ServicesDep, session: SessionDep
) -> FastJSONResponse:
    account = await get_account(session, account_id)
    columns = body.columns()
    if "proxy_config_id" in columns or body.group_ids:
        await _check_refs(session, body.proxy_config_id, body.group_ids)
    for name, value in columns.items():
        setattr(account, name, value)
    credentials = _apply_credentials(services.secrets, account, body)
    if credentials is None and "type" in columns:  # a new type may need other credentials
        credentials = _stored_credentials(services.secrets, account)
    _check_complete(account, credentials)
    if body.group_ids is not None:
        await _set_groups(session, account.id, body.group_ids)
    await commit_pool_change(session, services.state)
    return ok(await _view(session, services, account))


@router.delete("/{account_id}")
async def delete_account(account_id: PathId, services: ServicesDep, session: SessionDep) -> FastJSONResponse:
    account = await get_account(session, account_id)
    # Explicit, so memberships go even where the database does not enforce the cascade.
    await session.execute(delete(AccountGroupMember).where(AccountGroupMember.account_id == account.id))
    await session.delete(account)
    await commit_pool_change(session, services.state)
    return ok(None)


def _mark_valid(account: Account) -> None:
    account.status = "valid"
    account.status_reason = ""
    account.rate_limited_until = None
    account.overloaded_until = None


@router.put("/{account_id}/status")
async def set_account_status(
    account_id: PathId, body: AccountStatusBody, services: ServicesDep, session: SessionDep
) -> FastJSONResponse:
    account = await get_account(session, account_id)
    if body.status == "valid":
        _mark_valid(account)
    else:
        # A manual mark has no end time: it lasts until an admin changes it again.
        account.status = body.status
        account.status_reason = body.reason or "set by admin"
    await commit_pool_change(session, services.state)
    return ok(await _view(session, services, account))


@router.post("/{account_id}/recover")
async def recover_account(account_id: PathId, services: ServicesDep, session: SessionDep) -> FastJSONResponse:
    account = await get_account(session, account_id)
    _mark_valid(account)
    account.last_error = ""
    account.last_error_at = None
    await commit_pool_change(session, services.state)
    return ok(await _view(session, services, account))
