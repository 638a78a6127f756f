"""Admin: accounts (being written)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from ..audit import AuditedRoute
from ..deps import admin_user

router = APIRouter(
    prefix="/api/admin/accounts", tags=["admin: accounts"], route_class=AuditedRoute, dependencies=[Depends(admin_user)]
)
