"""Admin: test one account with a real upstream call (`POST /api/admin/proxy/test`)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import Field

from ...gateway.probe import probe_account
from ..audit import AuditedRoute
from ..deps import admin_user
from ..envelope import FastJSONResponse, ok
from ..numbers import Id
from ..openapi import error_responses
from ..schemas import Body

router = APIRouter(
    prefix="/api/admin/proxy",
    tags=["admin: proxy test"],
    route_class=AuditedRoute,
    dependencies=[Depends(admin_user)],
)


class ProbeBody(Body):
    account_id: Id
    model: str | None = Field(default=None, max_length=128)
    message: str = Field(default="Hello", min_length=1, max_length=4000)


@router.post("/test", responses=error_responses(404))  # an unknown account_id
async def test_account(body: ProbeBody, request: Request) -> FastJSONResponse:
    gateway = request.app.state.gateway
    result = await probe_account(
        gateway.pool,
        gateway.relay.clients,
        gateway.tokens,
        account_id=body.account_id,
        model=body.model,
        message=body.message,
        configs=gateway.configs,
    )
    return ok(result)
