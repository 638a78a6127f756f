"""What a signed-in user may buy and call: enabled models with prices, active packages."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from ..store.models import AIModel, Package
from .deps import CurrentUser, SessionDep
from .envelope import FastJSONResponse, ok
from .views import package_view, public_model_view

router = APIRouter(prefix="/api", tags=["catalog"])


@router.get("/models")
async def list_models(_user: CurrentUser, session: SessionDep) -> FastJSONResponse:
    models = await session.scalars(
        select(AIModel)
        .where(AIModel.enabled.is_(True))
        .order_by(AIModel.platform, AIModel.sort_order, AIModel.model_id)
    )
    return ok([public_model_view(m) for m in models])


@router.get("/packages")
async def list_packages(_user: CurrentUser, session: SessionDep) -> FastJSONResponse:
    packages = await session.scalars(
        select(Package).where(Package.status == "active").order_by(Package.sort_order, Package.id)
    )
    return ok([package_view(p) for p in packages])
