"""Admin: every API key in the system, searchable, and lookup of a full key's owner."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from ...errors import NotFound
from ...security.api_keys import hash_api_key
from ...store import users as user_store
from ...store.models import ApiKey, User
from ..audit import AuditedRoute
from ..deps import Paging, ServicesDep, SessionDep, admin_user
from ..envelope import FastJSONResponse, ok, page
from ..numbers import IdFilter, PathId
from ..openapi import error_responses
from ..schemas import AdminApiKeyUpdate, ApiKeyLookup
from ..views import api_key_view, user_view

router = APIRouter(
    prefix="/api/admin/api-keys",
    tags=["admin: api keys"],
    route_class=AuditedRoute,
    dependencies=[Depends(admin_user)],
)


def _with_owner(key: ApiKey, owner: User | None) -> dict[str, Any]:
    return {**api_key_view(key), "username": owner.username if owner else ""}


async def _get_key(session: AsyncSession, key_id: int) -> ApiKey:
    key = await session.get(ApiKey, key_id)
    if key is None:
        raise NotFound("API Key 不存在")
    return key


@router.get("")
async def list_keys(
    session: SessionDep,
    paging: Paging,
    user_id: IdFilter = None,
    status: Annotated[str | None, Query(pattern="^(active|disabled)$")] = None,
    keyword: Annotated[str | None, Query(max_length=100)] = None,
) -> FastJSONResponse:
    conditions = []
    if user_id is not None:
        conditions.append(ApiKey.user_id == user_id)
    if status:
        conditions.append(ApiKey.status == status)
    if keyword:
        pattern = f"%{keyword}%"
        conditions.append(
            or_(ApiKey.name.ilike(pattern), ApiKey.key_prefix.ilike(pattern), User.username.ilike(pattern))
        )
    base = select(ApiKey, User).outerjoin(User, User.id == ApiKey.user_id).where(*conditions)
    total = await session.scalar(select(func.count()).select_from(base.subquery()))
    rows = await session.execute(base.order_by(ApiKey.id).offset(paging.offset).limit(paging.page_size))
    items = [_with_owner(key, owner) for key, owner in rows.tuples()]
    return page(items, total=int(total or 0), page=paging.page, page_size=paging.page_size)


@router.post("/lookup", responses=error_responses(404))
async def lookup_key(body: ApiKeyLookup, session: SessionDep) -> FastJSONResponse:
    """Who owns this full `sk-` key (the body keeps the key out of URLs and access logs)."""
    key = await session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_api_key(body.key.strip())))
    if key is None:
        raise NotFound("API Key 不存在")
    owner = await session.get(User, key.user_id)
    return ok({"api_key": api_key_view(key), "user": user_view(owner) if owner else None})


@router.get("/{key_id}")
async def get_key(key_id: PathId, session: SessionDep) -> FastJSONResponse:
    key = await _get_key(session, key_id)
    return ok(_with_owner(key, await session.get(User, key.user_id)))


@router.put("/{key_id}")
async def update_key(
    key_id: PathId, body: AdminApiKeyUpdate, session: SessionDep, services: ServicesDep
) -> FastJSONResponse:
    key = await _get_key(session, key_id)
    await user_store.update_api_key(session, key, body.model_dump(exclude_unset=True))
    await user_store.commit_callers_change(session, services.state)
    return ok(_with_owner(key, await session.get(User, key.user_id)))


@router.put("/{key_id}/toggle")
async def toggle_key(key_id: PathId, session: SessionDep, services: ServicesDep) -> FastJSONResponse:
    key = await _get_key(session, key_id)
    user_store.toggle_key(key)
    await user_store.commit_callers_change(session, services.state)
    return ok({"id": key.id, "status": key.status})


@router.delete("/{key_id}")
async def delete_key(key_id: PathId, session: SessionDep, services: ServicesDep) -> FastJSONResponse:
    key = await _get_key(session, key_id)
    await session.delete(key)
    await user_store.commit_callers_change(session, services.state)
    return ok(None)
