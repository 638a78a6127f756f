"""Admin: the model table (ids, platforms, prices per 1M tokens, enabled)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from ...billing.model_catalog import MODEL_PLATFORMS, seed_models
from ...errors import BadRequest, NotFound
from ...store.accounts import commit_pool_change
from ...store.models import AIModel
from ..audit import AuditedRoute
from ..deps import Paging, ServicesDep, SessionDep, admin_user
from ..envelope import FastJSONResponse, created, ok, page
from ..numbers import PathId
from ..schemas import ModelCreate, ModelUpdate
from ..views import model_view

router = APIRouter(
    prefix="/api/admin/models",
    tags=["admin: models"],
    route_class=AuditedRoute,
    dependencies=[Depends(admin_user)],
)


async def _get(session: AsyncSession, model_pk: int) -> AIModel:
    model = await session.get(AIModel, model_pk)
    if model is None:
        raise NotFound("model not found")
    return model


async def _ensure_unique(session: AsyncSession, model_id: str, *, except_pk: int | None = None) -> None:
    clash = await session.scalar(select(AIModel.id).where(AIModel.model_id == model_id))
    if clash is not None and clash != except_pk:
        raise BadRequest("model_id already exists")


@router.get("")
async def list_models(
    session: SessionDep,
    paging: Paging,
    platform: Annotated[str | None, Query(max_length=32)] = None,
    enabled: bool | None = None,
    keyword: Annotated[str | None, Query(max_length=100)] = None,
) -> FastJSONResponse:
    conditions = []
    if platform:
        conditions.append(AIModel.platform == platform)
    if enabled is not None:
        conditions.append(AIModel.enabled.is_(enabled))
    if keyword:
        pattern = f"%{keyword}%"
        conditions.append(or_(AIModel.model_id.ilike(pattern), AIModel.model_name.ilike(pattern)))
    total = await session.scalar(select(func.count()).select_from(AIModel).where(*conditions))
    models = await session.scalars(
        select(AIModel)
        .where(*conditions)
        .order_by(AIModel.platform, AIModel.sort_order, AIModel.id)
        .offset(paging.offset)
        .limit(paging.page_size)
    )
    return page(
        [model_view(m) for m in models], total=int(total or 0), page=paging.page, page_size=paging.page_size
    )


@router.get("/platforms")
async def platforms(session: SessionDep) -> FastJSONResponse:
    stored = await session.scalars(select(AIModel.platform).distinct())
    return ok(sorted(set(MODEL_PLATFORMS) | set(stored)))


@router.post("", status_code=201)
async def create_model(body: ModelCreate, session: SessionDep, services: ServicesDep) -> FastJSONResponse:
    await _ensure_unique(session, body.model_id)
    model = AIModel(**body.model_dump(), is_default=False)
    session.add(model)
    await commit_pool_change(session, services.state)  # gateways reload their price book
    return created(model_view(model))


@router.post("/init-defaults")
async def init_defaults(session: SessionDep, services: ServicesDep) -> FastJSONResponse:
    result = await seed_models(session, reset=False)
    await commit_pool_change(session, services.state)  # gateways reload their price book
    return ok(result.as_dict())


@router.post("/reset-defaults")
async def reset_defaults(session: SessionDep, services: ServicesDep) -> FastJSONResponse:
    result = await seed_models(session, reset=True)
    await commit_pool_change(session, services.state)  # gateways reload their price book
    return ok(result.as_dict())


@router.get("/{model_pk}")
async def get_model(model_pk: PathId, session: SessionDep) -> FastJSONResponse:
    return ok(model_view(await _get(session, model_pk)))


@router.put("/{model_pk}")
async def update_model(
    model_pk: PathId, body: ModelUpdate, session: SessionDep, services: ServicesDep
) -> FastJSONResponse:
    model = await _get(session, model_pk)
    changes = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None}
    if "model_id" in changes:
        await _ensure_unique(session, changes["model_id"], except_pk=model.id)
    for name, value in changes.items():
        setattr(model, name, value)
    await commit_pool_change(session, services.state)  # gateways reload their price book
    return ok(model_view(model))


@router.delete("/{model_pk}")
async def delete_model(model_pk: PathId, session: SessionDep, services: ServicesDep) -> FastJSONResponse:
    await session.delete(await _get(session, model_pk))
    await commit_pool_change(session, services.state)  # gateways reload their price book
    return ok(None)


@router.put("/{model_pk}/toggle")
async def toggle_model(model_pk: PathId, session: SessionDep, services: ServicesDep) -> FastJSONResponse:
    model = await _get(session, model_pk)
    model.enabled = not model.enabled
    await commit_pool_change(session, services.state)  # gateways reload their price book
    return ok({"id": model.id, "enabled": model.enabled})
