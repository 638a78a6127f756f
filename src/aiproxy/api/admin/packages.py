"""Admin: packages for sale, and the packages each user holds (assign, renew, change, remove).

Every change is announced with `bump_callers_version`: the gateway caches each caller's packages.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from ...store import packages as package_store
from ...store import users as user_store
from ..audit import AuditedRoute
from ..deps import Paging, ServicesDep, SessionDep, admin_user
from ..envelope import FastJSONResponse, created, ok, page
from ..numbers import PathId
from ..package_schemas import PackageCreate, PackageUpdate, UserPackageAssign, UserPackageUpdate
from ..views import package_view, user_package_view

router = APIRouter(
    prefix="/api/admin",
    tags=["admin: packages"],
    route_class=AuditedRoute,
    dependencies=[Depends(admin_user)],
)


@router.get("/packages")
async def list_packages(
    session: SessionDep,
    paging: Paging,
    status: Annotated[str | None, Query(pattern="^(active|disabled)$")] = None,
) -> FastJSONResponse:
    packages, total = await package_store.list_packages(
        session, offset=paging.offset, limit=paging.page_size, status=status
    )
    return page(
        [package_view(p) for p in packages], total=total, page=paging.page, page_size=paging.page_size
    )


@router.post("/packages", status_code=201)
async def create_package(body: PackageCreate, session: SessionDep, services: ServicesDep) -> FastJSONResponse:
    package = await package_store.create_package(session, **body.model_dump(exclude_none=True))
    await user_store.commit_callers_change(session, services.state)
    return created(package_view(package))


@router.get("/packages/{package_id}")
async def get_package(package_id: PathId, session: SessionDep) -> FastJSONResponse:
    return ok(package_view(await package_store.get_package(session, package_id)))


@router.put("/packages/{package_id}")
async def update_package(
    package_id: PathId, body: PackageUpdate, session: SessionDep, services: ServicesDep
) -> FastJSONResponse:
    package = await package_store.update_package(
        session, package_id=package_id, changes=body.model_dump(exclude_none=True)
    )
    await user_store.commit_callers_change(session, services.state)
    return ok(package_view(package))


@router.delete("/packages/{package_id}")
async def delete_package(package_id: PathId, session: SessionDep, services: ServicesDep) -> FastJSONResponse:
    await package_store.delete_package(session, package_id=package_id)
    await user_store.commit_callers_change(session, services.state)
    return ok(None)


@router.get("/user-packages/user/{user_id}")
async def list_user_packages(user_id: PathId, session: SessionDep, services: ServicesDep) -> FastJSONResponse:
    await user_store.get_user(session, user_id)
    await package_store.refresh_and_publish(session, services.state, user_id=user_id)
    holdings = await package_store.list_user_packages(session, user_id=user_id)
    return ok([user_package_view(h) for h in holdings])


@router.post("/user-packages/user/{user_id}", status_code=201)
async def assign_package(
    user_id: PathId, body: UserPackageAssign, session: SessionDep, services: ServicesDep
) -> FastJSONResponse:
    """`mode`: `new` (default) adds a holding; `extend` and `reset` renew the user's live holding of
    the same package (a new one when there is none)."""
    holding = await package_store.assign_package(session, user_id=user_id, **body.model_dump())
    await user_store.commit_callers_change(session, services.state)
    return created(user_package_view(holding))


@router.put("/user-packages/{user_package_id}")
async def update_user_package(
    user_package_id: PathId, body: UserPackageUpdate, session: SessionDep, services: ServicesDep
) -> FastJSONResponse:
    holding = await package_store.update_user_package(
        session, user_package_id=user_package_id, **body.model_dump()
    )
    await user_store.commit_callers_change(session, services.state)
    return ok(user_package_view(holding))


@router.delete("/user-packages/{user_package_id}")
async def delete_user_package(
    user_package_id: PathId, session: SessionDep, services: ServicesDep
) -> FastJSONResponse:
    await package_store.delete_user_package(session, user_package_id=user_package_id)
    await user_store.commit_callers_change(session, services.state)
    return ok(None)
