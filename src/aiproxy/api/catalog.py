"""What a signed-in user may call: enabled models with prices (packages on sale: `packages.py`)."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from ..store.models import AIModel
from .deps import CurrentUser, SessionDep
from .envelope import FastJSONResponse, ok
from .views import public_model_view

router = APIRouter(prefix="/api", tags=["catalog"])


@router.get("/models")
async def list_models(_user: CurrentUser, session: SessionDep) -> FastJSONResponse:
    models = await session.scalars(
        select(AIModel)
        .where(AIModel.enabled.is_(True))
        .order_by(AIModel.platform, AIModel.sort_order, AIModel.model_id)
    )
    return ok([public_model_view(m) for m in models])
