"""The signed-in user's own profile and password."""

from __future__ import annotations

from fastapi import APIRouter

from ..errors import BadRequest
from ..security.passwords import verify_password
from ..store import users as user_store
from .deps import CurrentUser, SessionDep
from .envelope import FastJSONResponse, ok
from .schemas import PasswordChange, ProfileUpdate
from .views import user_view

router = APIRouter(prefix="/api/profile", tags=["profile"])


@router.get("")
async def get_profile(user: CurrentUser) -> FastJSONResponse:
    return ok(user_view(user))


@router.put("")
async def update_profile(body: ProfileUpdate, user: CurrentUser, session: SessionDep) -> FastJSONResponse:
    # Only contact details: role, status, rates and limits are the admin's to change.
    if body.email is not None:
        user.email = body.email
    await session.commit()
    return ok(user_view(user))


@router.put("/password")
async def change_password(body: PasswordChange, user: CurrentUser, session: SessionDep) -> FastJSONResponse:
    if not verify_password(body.old_password, user.password_hash):
        raise BadRequest("incorrect old password")
    if body.old_password == body.new_password:
        raise BadRequest("new password must differ from the old one")
    user_store.set_password(user, body.new_password)
    await session.commit()
    return ok(None)
