"""Admin: account groups. A key or user bound to a group is served only by its member accounts."""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import APIRouter, Depends
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ...errors import BadRequest, NotFound
from ...store.accounts import bump_pool_version, commit_pool_change
from ...store.models import Account, AccountGroup, AccountGroupMember
from ..audit import AuditedRoute
from ..deps import Paging, ServicesDep, SessionDep, admin_user
from ..envelope import FastJSONResponse, created, ok, page
from ..numbers import PathId
from ..pool_schemas import GroupCreate, GroupMemberBody, GroupUpdate
from ..pool_views import account_brief, group_view
from .accounts import get_account

router = APIRouter(
    prefix="/api/admin/account-groups",
    tags=["admin: account groups"],
    route_class=AuditedRoute,
    dependencies=[Depends(admin_user)],
)


async def _get(session: AsyncSession, group_id: int) -> AccountGroup:
    group = await session.get(AccountGroup, group_id)
    if group is None:
        raise NotFound("account group not found")
    return group


async def _ensure_unique(session: AsyncSession, name: str, *, except_id: int | None = None) -> None:
    clash = await session.scalar(select(AccountGroup.id).where(AccountGroup.name == name))
    if clash is not None and clash != except_id:
        raise BadRequest("group name already exists")


async def _clear_other_defaults(session: AsyncSession, keep_id: int) -> None:
    """Only one group is the default; making one default demotes the rest."""
    await session.execute(
        update(AccountGroup)
        .where(AccountGroup.id != keep_id, AccountGroup.is_default.is_(True))
        .values(is_default=False)
    )


async def _counts(session: AsyncSession, group_ids: Iterable[int]) -> dict[int, int]:
    ids = list(group_ids)
    if not ids:
        return {}
    rows = await session.execute(
        select(AccountGroupMember.group_id, func.count())
        .where(AccountGroupMember.group_id.in_(ids))
        .group_by(AccountGroupMember.group_id)
    )
    return {group_id: int(count) for group_id, count in rows}


async def _views(session: AsyncSession, groups: list[AccountGroup]) -> list[dict[str, object]]:
    counts = await _counts(session, [g.id for g in groups])
    return [group_view(g, counts.get(g.id, 0)) for g in groups]


async def _detail(session: AsyncSession, group: AccountGroup) -> dict[str, object]:
    accounts = list(
        await session.scalars(
            select(Account)
            .join(AccountGroupMember, AccountGroupMember.account_id == Account.id)
            .where(AccountGroupMember.group_id == group.id)
            .order_by(Account.id)
        )
    )
    return {
        **group_view(group, len(accounts)),
        "account_ids": [a.id for a in accounts],
        "accounts": [account_brief(a) for a in accounts],
    }


@router.get("")
async def list_groups(session: SessionDep, paging: Paging) -> FastJSONResponse:
    total = await session.scalar(select(func.count()).select_from(AccountGroup))
    groups = list(
        await session.scalars(
            select(AccountGroup).order_by(AccountGroup.id).offset(paging.offset).limit(paging.page_size)
        )
    )
    items = await _views(session, groups)
    return page(items, total=int(total or 0), page=paging.page, page_size=paging.page_size)


@router.get("/all")
async def all_groups(session: SessionDep) -> FastJSONResponse:
    groups = list(await session.scalars(select(AccountGroup).order_by(AccountGroup.id)))
    return ok(await _views(session, groups))


@router.post("", status_code=201)
async def create_group(body: GroupCreate, services: ServicesDep, session: SessionDep) -> FastJSONResponse:
    await _ensure_unique(session, body.name)
    group = AccountGroup(**body.model_dump())
    session.add(group)
    await session.flush()
    if group.is_default:
        await _clear_other_defaults(session, group.id)
    await commit_pool_change(session, services.state)
    return created(group_view(group))


@router.get("/{group_id}")
async def get_group(group_id: PathId, session: SessionDep) -> FastJSONResponse:
    return ok(await _detail(session, await _get(session, group_id)))


@router.put("/{group_id}")
async def update_group(
    group_id: PathId, body: GroupUpdate, services: ServicesDep, session: SessionDep
) -> FastJSONResponse:
    group = await _get(session, group_id)
    changes = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None}
    if "name" in changes:
        await _ensure_unique(session, changes["name"], except_id=group.id)
    for name, value in changes.items():
        setattr(group, name, value)
    if changes.get("is_default"):
        await _clear_other_defaults(session, group.id)
    await commit_pool_change(session, services.state)
    return ok(await _detail(session, group))


@router.delete("/{group_id}")
async def delete_group(group_id: PathId, services: ServicesDep, session: SessionDep) -> FastJSONResponse:
    group = await _get(session, group_id)
    # Memberships go with the group; keys and users bound to it fall back to no group (FK SET NULL).
    await session.execute(delete(AccountGroupMember).where(AccountGroupMember.group_id == group.id))
    await session.delete(group)
    await commit_pool_change(session, services.state)
    return ok(None)


@router.post("/{group_id}/accounts")
async def add_member(
    group_id: PathId, body: GroupMemberBody, services: ServicesDep, session: SessionDep
) -> FastJSONResponse:
    group = await _get(session, group_id)
    account = await get_account(session, body.account_id)
    exists = await session.get(AccountGroupMember, (group.id, account.id))
    if exists is None:  # adding twice is harmless
        session.add(AccountGroupMember(group_id=group.id, account_id=account.id))
        await commit_pool_change(session, services.state)
    return ok({"group_id": group.id, "account_id": account.id, "added": exists is None})


@router.delete("/{group_id}/accounts/{account_id}")
async def remove_member(
    group_id: PathId, account_id: PathId, services: ServicesDep, session: SessionDep
) -> FastJSONResponse:
    group = await _get(session, group_id)
    result = await session.execute(
        delete(AccountGroupMember).where(
            AccountGroupMember.group_id == group.id, AccountGroupMember.account_id == account_id
        )
    )
    await session.commit()
    removed = bool(result.rowcount)  # type: ignore[attr-defined]
    if removed:
        await bump_pool_version(services.state)
    return ok({"group_id": group.id, "account_id": account_id, "removed": removed})
