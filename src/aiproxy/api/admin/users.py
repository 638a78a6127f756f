"""Admin: users, their price rates, API keys, usage and live concurrency."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy import func, or_, select, update

from ... import state_keys
from ...billing.usage_queries import usage_summary
from ...errors import BadRequest
from ...store import users as user_store
from ...store.models import ApiKey, User
from ..audit import AuditedRoute
from ..deps import AdminUser, Paging, ServicesDep, SessionDep, admin_user
from ..envelope import FastJSONResponse, created, ok, page
from ..numbers import PathId
from ..schemas import AdminApiKeyCreate, AllPriceRate, BatchPriceRate, UserCreate, UserUpdate
from ..views import api_key_view, user_view

router = APIRouter(
    prefix="/api/admin/users",
    tags=["admin: users"],
    route_class=AuditedRoute,
    dependencies=[Depends(admin_user)],
)


@router.get("")
async def list_users(
    session: SessionDep,
    paging: Paging,
    keyword: Annotated[str | None, Query(max_length=100)] = None,
    role: Annotated[str | None, Query(pattern="^(admin|user)$")] = None,
    status: Annotated[str | None, Query(pattern="^(active|disabled)$")] = None,
) -> FastJSONResponse:
    conditions = []
    if keyword:
        pattern = f"%{keyword}%"
        conditions.append(or_(User.username.ilike(pattern), User.email.ilike(pattern)))
    if role:
        conditions.append(User.role == role)
    if status:
        conditions.append(User.status == status)
    total = await session.scalar(select(func.count()).select_from(User).where(*conditions))
    users = await session.scalars(
        select(User).where(*conditions).order_by(User.id).offset(paging.offset).limit(paging.page_size)
    )
    return page(
        [user_view(u) for u in users], total=int(total or 0), page=paging.page, page_size=paging.page_size
    )


@router.get("/all")
async def all_users(session: SessionDep) -> FastJSONResponse:
    users = await session.scalars(select(User).order_by(User.id))
    return ok([user_view(u) for u in users])


@router.post("", status_code=201)
async def create_user(body: UserCreate, services: ServicesDep, session: SessionDep) -> FastJSONResponse:
    max_concurrency = body.max_concurrency
    if max_concurrency is None:
        max_concurrency = services.configs.get("default_max_concurrency")
    user = await user_store.create_user(
        session,
        username=body.username,
        password=body.password,
        email=body.email or "",
        role=body.role,
        status=body.status,
        price_rate=body.price_rate,
        max_concurrency=max_concurrency,
        balance=body.balance,
        account_group_id=body.account_group_id,
    )
    await session.commit()
    return created(user_view(user))


@router.post("/batch-price-rate")
async def batch_price_rate(
    body: BatchPriceRate, session: SessionDep, services: ServicesDep
) -> FastJSONResponse:
    result = await session.execute(
        update(User).where(User.id.in_(body.user_ids)).values(price_rate=body.price_rate)
    )
    await user_store.commit_callers_change(session, services.state)
    return ok({"updated": result.rowcount, "price_rate": body.price_rate})  # type: ignore[attr-defined]


@router.post("/all-price-rate")
async def all_price_rate(body: AllPriceRate, session: SessionDep, services: ServicesDep) -> FastJSONResponse:
    result = await session.execute(update(User).values(price_rate=body.price_rate))
    await user_store.commit_callers_change(session, services.state)
    return ok({"updated": result.rowcount, "price_rate": body.price_rate})  # type: ignore[attr-defined]


@router.get("/{user_id}")
async def get_user(user_id: PathId, session: SessionDep) -> FastJSONResponse:
    return ok(user_view(await user_store.get_user(session, user_id)))


@router.put("/{user_id}")
async def update_user(
    user_id: PathId, body: UserUpdate, admin: AdminUser, session: SessionDep, services: ServicesDep
) -> FastJSONResponse:
    user = await user_store.get_user(session, user_id)
    changes = body.model_dump(exclude_unset=True)
    if user.id == admin.id and (changes.get("role") == "user" or changes.get("status") == "disabled"):
        raise BadRequest("you cannot demote or disable your own account")
    if "account_group_id" in changes:
        await user_store.check_group(session, changes["account_group_id"])
    password = changes.pop("password", None)
    if password:
        user_store.set_password(user, password)
    if changes.get("role") == "user" or changes.get("status") == "disabled":
        # Demoting or disabling also ends the user's console sessions.
        user.token_version += 1
    for name, value in changes.items():
        if value is not None or name == "account_group_id":
            setattr(user, name, value)
    await user_store.commit_callers_change(session, services.state)
    return ok(user_view(user))


@router.delete("/{user_id}")
async def delete_user(
    user_id: PathId, admin: AdminUser, session: SessionDep, services: ServicesDep
) -> FastJSONResponse:
    user = await user_store.get_user(session, user_id)
    if user.id == admin.id:
        raise BadRequest("you cannot delete your own account")
    await session.delete(user)
    await user_store.commit_callers_change(session, services.state)
    return ok(None)


@router.get("/{user_id}/usage/summary")
async def user_usage_summary(user_id: PathId, session: SessionDep) -> FastJSONResponse:
    await user_store.get_user(session, user_id)
    return ok(await usage_summary(session, user_id=user_id))


@router.get("/{user_id}/concurrency")
async def user_concurrency(user_id: PathId, services: ServicesDep, session: SessionDep) -> FastJSONResponse:
    user = await user_store.get_user(session, user_id)
    key = state_keys.user_slots(user.id)
    return ok(
        {
            "user_id": user.id,
            "current": await services.state.slot_count(key),
            "max_concurrency": user.max_concurrency,
            "holders": await services.state.slot_holders(key),
        }
    )


@router.delete("/{user_id}/concurrency")
async def reset_user_concurrency(
    user_id: PathId, services: ServicesDep, session: SessionDep
) -> FastJSONResponse:
    user = await user_store.get_user(session, user_id)
    released = await services.state.reset_slots(state_keys.user_slots(user.id))
    return ok({"user_id": user.id, "released": released})


@router.get("/{user_id}/api-keys")
async def list_user_keys(user_id: PathId, session: SessionDep) -> FastJSONResponse:
    await user_store.get_user(session, user_id)
    keys = await session.scalars(select(ApiKey).where(ApiKey.user_id == user_id).order_by(ApiKey.id))
    return ok([api_key_view(k) for k in keys])


@router.post("/{user_id}/api-keys", status_code=201)
async def create_user_key(
    user_id: PathId, body: AdminApiKeyCreate, services: ServicesDep, session: SessionDep
) -> FastJSONResponse:
    await user_store.get_user(session, user_id)
    key, raw = await user_store.create_api_key(
        session,
        services.secrets,
        user_id=user_id,
        name=body.name,
        fields=body.model_dump(exclude={"name"}, exclude_unset=True),
    )
    await session.commit()
    # Shown once, so the admin can hand it over; it stays revealable only by its owner.
    return created({**api_key_view(key), "key": raw})


@router.delete("/{user_id}/api-keys/{key_id}")
async def delete_user_key(
    user_id: PathId, key_id: PathId, session: SessionDep, services: ServicesDep
) -> FastJSONResponse:
    key = await user_store.get_user_key(session, user_id=user_id, key_id=key_id)
    await session.delete(key)
    await user_store.commit_callers_change(session, services.state)
    return ok(None)


@router.put("/{user_id}/api-keys/{key_id}/toggle")
async def toggle_user_key(
    user_id: PathId, key_id: PathId, session: SessionDep, services: ServicesDep
) -> FastJSONResponse:
    key = await user_store.get_user_key(session, user_id=user_id, key_id=key_id)
    user_store.toggle_key(key)
    await user_store.commit_callers_change(session, services.state)
    return ok({"id": key.id, "status": key.status})
