"""Admin: error-rules (being written)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from ..audit import AuditedRoute
from ..deps import admin_user

router = APIRouter(
    prefix="/api/admin/error-rules", tags=["admin: error-rules"], route_class=AuditedRoute, dependencies=[Depends(admin_user)]
)

messages_router = APIRouter(
    prefix="/api/admin/error-messages",
    tags=["admin: error-messages"],
    route_class=AuditedRoute,
    dependencies=[Depends(admin_user)],
)
