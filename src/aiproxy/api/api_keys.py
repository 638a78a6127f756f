"""A user's own API keys: the keys their tools send to the proxy endpoints."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from ..errors import BadRequest
from ..security.secretbox import SecretBoxError
from ..store import users as user_store
from ..store.models import ApiKey
from .deps import CurrentUser, ServicesDep, SessionDep
from .envelope import FastJSONResponse, created, ok
from .numbers import PathId
from .schemas import ApiKeyCreate, ApiKeyUpdate
from .views import api_key_view

router = APIRouter(prefix="/api/api-keys", tags=["api-keys"])


@router.get("")
async def list_keys(user: CurrentUser, session: SessionDep) -> FastJSONResponse:
    keys = await session.scalars(select(ApiKey).where(ApiKey.user_id == user.id).order_by(ApiKey.id))
    return ok([api_key_view(k) for k in keys])


@router.post("", status_code=201)
async def create_key(
    body: ApiKeyCreate, user: CurrentUser, services: ServicesDep, session: SessionDep
) -> FastJSONResponse:
    key, raw = await user_store.create_api_key(
        session,
        services.secrets,
        user_id=user.id,
        name=body.name,
        fields=body.model_dump(exclude={"name"}, exclude_unset=True),
    )
    await session.commit()
    return created({**api_key_view(key), "key": raw})


@router.get("/{key_id}")
async def get_key(key_id: PathId, user: CurrentUser, session: SessionDep) -> FastJSONResponse:
    return ok(api_key_view(await user_store.get_user_key(session, user_id=user.id, key_id=key_id)))


@router.get("/{key_id}/reveal")
async def reveal_key(
    key_id: PathId, user: CurrentUser, services: ServicesDep, session: SessionDep
) -> FastJSONResponse:
    """The full key again, to its owner only (admins cannot reveal other users' keys)."""
    key = await user_store.get_user_key(session, user_id=user.id, key_id=key_id)
    try:
        return ok({"id": key.id, "key": services.secrets.decrypt(key.key_encrypted)})
    except SecretBoxError:
        raise BadRequest("this key can no longer be revealed: the server's secret key has changed") from None


@router.put("/{key_id}")
async def update_key(
    key_id: PathId, body: ApiKeyUpdate, user: CurrentUser, session: SessionDep, services: ServicesDep
) -> FastJSONResponse:
    key = await user_store.get_user_key(session, user_id=user.id, key_id=key_id)
    await user_store.update_api_key(session, key, body.model_dump(exclude_unset=True))
    await user_store.commit_callers_change(session, services.state)
    return ok(api_key_view(key))


@router.delete("/{key_id}")
async def delete_key(
    key_id: PathId, user: CurrentUser, session: SessionDep, services: ServicesDep
) -> FastJSONResponse:
    key = await user_store.get_user_key(session, user_id=user.id, key_id=key_id)
    await session.delete(key)
    await user_store.commit_callers_change(session, services.state)
    return ok(None)


@router.put("/{key_id}/toggle")
async def toggle_key(
    key_id: PathId, user: CurrentUser, session: SessionDep, services: ServicesDep
) -> FastJSONResponse:
    key = await user_store.get_user_key(session, user_id=user.id, key_id=key_id)
    user_store.toggle_key(key)
    await user_store.commit_callers_change(session, services.state)
    return ok({"id": key.id, "status": key.status})
