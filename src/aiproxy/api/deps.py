"""FastAPI dependencies shared by every router, as `Annotated` aliases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from ..client_address import client_address
from ..errors import ADMIN_REQUIRED, Forbidden, Unauthorized
from ..security.tokens import TokenError, decode_token
from ..services import Services
from ..store.models import User
from .numbers import MAX_PAGE_SIZE, PageNumber, PageSize


def get_services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_session(request: Request, services: ServicesDep) -> AsyncIterator[AsyncSession]:
    async with services.db.sessions() as session:
        request.state.db_session = session  # the audit rolls a refused write back (api/audit.py)
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def current_user(request: Request, services: ServicesDep, session: SessionDep) -> User:
    token = bearer_token(request)
    if token is None:
        raise Unauthorized("unauthorized")
    try:
        claims = decode_token(services.jwt_secret, token)
    except TokenError:
        raise Unauthorized("invalid or expired token") from None
    user = await session.get(User, claims.user_id)
    if user is None or user.token_version != claims.version:
        raise Unauthorized("invalid or expired token")
    if user.status != "active":
        raise Unauthorized("user is disabled")
    request.state.user = user
    return user


CurrentUser = Annotated[User, Depends(current_user)]


async def admin_user(user: CurrentUser) -> User:
    if user.role != "admin":
        raise Forbidden(ADMIN_REQUIRED)
    return user


AdminUser = Annotated[User, Depends(admin_user)]


@dataclass(frozen=True, slots=True)
class PageParams:
    page: int
    page_size: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.page_size


def page_params(page: PageNumber = 1, page_size: PageSize = 20) -> PageParams:
    return PageParams(page=page, page_size=min(page_size, MAX_PAGE_SIZE))


Paging = Annotated[PageParams, Depends(page_params)]


def client_ip(request: Request) -> str:
    services: Services = request.app.state.services
    return client_address(
        request.client.host if request.client else "",
        request.headers.get("x-forwarded-for"),
        request.headers.get("x-real-ip"),
        trust_proxy=services.settings.trust_proxy_headers,
    )
