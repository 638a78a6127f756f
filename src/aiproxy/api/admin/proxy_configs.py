"""Admin: outbound proxies for upstream accounts (passwords encrypted, never shown)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ...errors import BadRequest, NotFound
from ...security.secretbox import SecretBoxError
from ...store.accounts import bump_pool_version, commit_pool_change
from ...store.models import ProxyConfig
from ...store.proxies import test_proxy
from ..audit import AuditedRoute
from ..deps import ServicesDep, SessionDep, admin_user
from ..envelope import FastJSONResponse, created, ok
from ..numbers import PathId
from ..openapi import error_responses
from ..pool_schemas import ProxyCreate, ProxyTestBody, ProxyUpdate
from ..pool_views import proxy_view

router = APIRouter(
    prefix="/api/admin/proxy-configs",
    tags=["admin: proxy configs"],
    route_class=AuditedRoute,
    dependencies=[Depends(admin_user)],
)


async def _get(session: AsyncSession, proxy_id: int) -> ProxyConfig:
    proxy = await session.get(ProxyConfig, proxy_id)
    if proxy is None:
        raise NotFound("proxy config not found")
    return proxy


async def _clear_defaults(session: AsyncSession, *, keep_id: int | None = None) -> int:
    conditions = [ProxyConfig.is_default.is_(True)]
    if keep_id is not None:
        conditions.append(ProxyConfig.id != keep_id)
    result = await session.execute(update(ProxyConfig).where(*conditions).values(is_default=False))
    return int(result.rowcount)  # type: ignore[attr-defined]


@router.get("")
async def list_proxies(session: SessionDep) -> FastJSONResponse:
    proxies = await session.scalars(select(ProxyConfig).order_by(ProxyConfig.id))
    return ok([proxy_view(p) for p in proxies])


# The fixed paths come before "/{proxy_id}" so they are not read as ids.
@router.get("/enabled")
async def enabled_proxies(session: SessionDep) -> FastJSONResponse:
    proxies = await session.scalars(
        select(ProxyConfig).where(ProxyConfig.enabled.is_(True)).order_by(ProxyConfig.id)
    )
    return ok([proxy_view(p) for p in proxies])


@router.get("/default")
async def default_proxy(session: SessionDep) -> FastJSONResponse:
    proxy = await session.scalar(
        select(ProxyConfig).where(ProxyConfig.is_default.is_(True)).order_by(ProxyConfig.id).limit(1)
    )
    return ok(proxy_view(proxy) if proxy else None)


@router.delete("/default")
async def clear_default_proxy(services: ServicesDep, session: SessionDep) -> FastJSONResponse:
    cleared = await _clear_defaults(session)
    await session.commit()
    if cleared:
        await bump_pool_version(services.state)
    return ok({"cleared": cleared})


@router.post("/test", responses=error_responses(404))  # an unknown stored proxy id
async def test_proxy_route(
    body: ProxyTestBody, services: ServicesDep, session: SessionDep
) -> FastJSONResponse:
    if body.id is not None:
        proxy = await _get(session, body.id)
        try:
            password = services.secrets.decrypt_optional(proxy.password_encrypted) or ""
        except SecretBoxError:
            raise BadRequest("password: stored password cannot be decrypted, set it again") from None
        kind, host, port, username = proxy.type, proxy.host, proxy.port, proxy.username
    else:
        if body.host is None:
            raise BadRequest("host: field required")
        if body.port is None:
            raise BadRequest("port: field required")
        kind, host, port, username, password = body.type, body.host, body.port, body.username, body.password
    await session.close()  # release the database connection during the network wait
    result = await test_proxy(kind, host, port, username, password, timeout=body.timeout, target=body.target)
    return ok(result)


@router.post("", status_code=201)
async def create_proxy(body: ProxyCreate, services: ServicesDep, session: SessionDep) -> FastJSONResponse:
    fields = body.model_dump(exclude={"password"})
    proxy = ProxyConfig(**fields, password_encrypted=services.secrets.encrypt_optional(body.password))
    session.add(proxy)
    await commit_pool_change(session, services.state)
    return created(proxy_view(proxy))


@router.get("/{proxy_id}")
async def get_proxy(proxy_id: PathId, session: SessionDep) -> FastJSONResponse:
    return ok(proxy_view(await _get(session, proxy_id)))


@router.put("/{proxy_id}")
async def update_proxy(
    proxy_id: PathId, body: ProxyUpdate, services: ServicesDep, session: SessionDep
) -> FastJSONResponse:
    proxy = await _get(session, proxy_id)
    changes = body.model_dump(exclude_unset=True, exclude={"password", "clear_password"})
    for name, value in changes.items():
        if value is not None:
            setattr(proxy, name, value)
    if body.password:  # an empty password keeps the stored one
        proxy.password_encrypted = services.secrets.encrypt(body.password)
    elif body.clear_password:
        proxy.password_encrypted = None
    await commit_pool_change(session, services.state)
    return ok(proxy_view(proxy))


@router.delete("/{proxy_id}")
async def delete_proxy(proxy_id: PathId, services: ServicesDep, session: SessionDep) -> FastJSONResponse:
    # Accounts that used it lose their proxy (FK SET NULL) and connect directly.
    await session.delete(await _get(session, proxy_id))
    await commit_pool_change(session, services.state)
    return ok(None)


@router.put("/{proxy_id}/toggle")
async def toggle_proxy(proxy_id: PathId, services: ServicesDep, session: SessionDep) -> FastJSONResponse:
    proxy = await _get(session, proxy_id)
    proxy.enabled = not proxy.enabled
    await commit_pool_change(session, services.state)
    return ok({"id": proxy.id, "enabled": proxy.enabled})


@router.put("/{proxy_id}/default")
async def make_default_proxy(
    proxy_id: PathId, services: ServicesDep, session: SessionDep
) -> FastJSONResponse:
    proxy = await _get(session, proxy_id)
    await _clear_defaults(session, keep_id=proxy.id)
    proxy.is_default = True
    await commit_pool_change(session, services.state)
    return ok(proxy_view(proxy))
