"""Admin: OAuth onboarding of subscription accounts (Claude, Codex, Gemini). See docs/oauth-accounts.md.

`generate-url` starts a PKCE login and keeps it ten minutes in the shared state; `exchange`
finishes it with what the admin pasted back; `cookie-auth` logs a Claude account in with a
claude.ai session cookie instead of a browser. Every vendor error is a 400 carrying the vendor's
own (masked) words, and nothing is stored unless the whole login succeeded.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import Field, StrictBool

from ...errors import BadRequest
from ...oauth import onboarding
from ...oauth.errors import OAuthError
from ...services import Services
from ..audit import AuditedRoute
from ..deps import ServicesDep, SessionDep, admin_user
from ..envelope import FastJSONResponse, created, ok
from ..numbers import Id
from ..openapi import error_responses
from ..pool_views import account_view
from ..schemas import Body
from .accounts import group_ids_of

router = APIRouter(
    prefix="/api/admin/oauth",
    tags=["admin: oauth"],
    route_class=AuditedRoute,
    dependencies=[Depends(admin_user)],
)

Kind = Annotated[str, Field(max_length=32, description=f"one of {', '.join(onboarding.KINDS)}")]
SessionId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")]
ProjectId = Annotated[
    str,
    Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$", description="Google Cloud project id"),
]
Name = Annotated[str, Field(min_length=1, max_length=100)]
Pasted = Annotated[str, Field(max_length=8192, description="the code, CODE#STATE, or the whole callback URL")]
Cookie = Annotated[str, Field(min_length=1, max_length=8192)]


class KindFields(Body):
    type: Kind | None = None
    platform: Kind | None = None  # the same, under the name other admin routes use

    def kind(self) -> str | None:
        if (
            self.type
            and self.platform
            and onboarding.resolve_kind(self.type) != onboarding.resolve_kind(self.platform)
        ):
            raise BadRequest("type: type and platform disagree")
        return self.type or self.platform


class GenerateUrlBody(KindFields):
    proxy_config_id: Id | None = None
    account_id: Id | None = Field(default=None, description="log this existing account in again")
    setup_token: StrictBool = Field(default=False, description="Claude: a one-year, inference-only token")
    project_id: ProjectId | None = Field(
        default=None, description="Gemini: a Google Cloud project of your own"
    )


class ExchangeBody(KindFields):
    session_id: SessionId
    code: Pasted | None = None
    name: Name | None = None
    account_id: Id | None = None
    project_id: ProjectId | None = None


class CookieBody(KindFields):
    cookie: Cookie | None = Field(default=None, description="claude.ai sessionKey cookie (or its value)")
    session_key: Cookie | None = None
    proxy_config_id: Id | None = None
    name: Name | None = None
    account_id: Id | None = None
    setup_token: StrictBool = False


def _context(request: Request, services: Services) -> onboarding.Context:
    clients = request.app.state.gateway.relay.clients
    return onboarding.Context(services.settings, services.state, services.secrets, clients.http)


async def _answer(services: Services, stored: onboarding.Stored, session: Any) -> FastJSONResponse:
    groups = await group_ids_of(session, [stored.account.id])
    view = account_view(stored.account, services.secrets, groups.get(stored.account.id, []))
    return created(view) if stored.created else ok(view)


@router.post("/generate-url", responses=error_responses(404))  # an unknown account_id
async def generate_url(
    body: GenerateUrlBody, request: Request, services: ServicesDep, session: SessionDep
) -> FastJSONResponse:
    data = await onboarding.start(
        _context(request, services),
        session,
        body.kind(),
        proxy_config_id=body.proxy_config_id,
        account_id=body.account_id,
        setup_token=body.setup_token,
        project_id=body.project_id,
    )
    return ok(data)


# 404: an account_id (body or session) that does not exist; 201 when a new account was created.
EXCHANGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **error_responses(404),
    201: {"description": "a new account was created (200: an existing account was logged in again)"},
}


@router.post("/exchange", responses=EXCHANGE_RESPONSES)
async def exchange(
    body: ExchangeBody, request: Request, services: ServicesDep, session: SessionDep
) -> FastJSONResponse:
    try:
        stored = await onboarding.exchange(
            _context(request, services),
            session,
            session_id=body.session_id,
            code=body.code,
            kind=body.kind(),
            name=body.name,
            account_id=body.account_id,
            project_id=body.project_id,
        )
    except OAuthError as exc:
        raise BadRequest(exc.message) from None
    return await _answer(services, stored, session)


@router.post("/cookie-auth", responses=EXCHANGE_RESPONSES)
async def cookie_auth(
    body: CookieBody, request: Request, services: ServicesDep, session: SessionDep
) -> FastJSONResponse:
    cookie = body.cookie or body.session_key
    if not cookie:
        raise BadRequest("cookie: required (the claude.ai sessionKey cookie)")
    try:
        stored = await onboarding.cookie_login(
            _context(request, services),
            session,
            cookie=cookie,
            kind=body.kind(),
            name=body.name,
            account_id=body.account_id,
            proxy_config_id=body.proxy_config_id,
            setup_token=body.setup_token,
        )
    except OAuthError as exc:
        raise BadRequest(exc.message) from None
    return await _answer(services, stored, session)
