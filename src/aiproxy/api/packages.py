"""Packages for a signed-in user: what is on sale, and the packages they hold."""

from __future__ import annotations

from fastapi import APIRouter

from ..store import packages as package_store
from .deps import CurrentUser, ServicesDep, SessionDep
from .envelope import FastJSONResponse, ok
from .views import package_view, user_package_view

router = APIRouter(prefix="/api", tags=["packages"])


@router.get("/packages")
async def list_packages(_user: CurrentUser, session: SessionDep) -> FastJSONResponse:
    """Packages on sale (status active), in the shop's order."""
    return ok([package_view(p) for p in await package_store.list_on_sale_packages(session)])


@router.get("/my-packages")
async def my_packages(user: CurrentUser, session: SessionDep, services: ServicesDep) -> FastJSONResponse:
    """Every package the user holds or held, newest first."""
    await package_store.refresh_and_publish(session, services.state, user_id=user.id)
    holdings = await package_store.list_user_packages(session, user_id=user.id)
    return ok([user_package_view(h) for h in holdings])


@router.get("/my-packages/active")
async def my_active_packages(
    user: CurrentUser, session: SessionDep, services: ServicesDep
) -> FastJSONResponse:
    """The packages usable now, the one ending first first."""
    await package_store.refresh_and_publish(session, services.state, user_id=user.id)
    holdings = await package_store.list_active_user_packages(session, user_id=user.id)
    return ok([user_package_view(h) for h in holdings])
