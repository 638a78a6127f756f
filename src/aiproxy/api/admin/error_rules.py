"""Admin: upstream error rules (error → account status) and client-facing error messages."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from ...errors import NotFound
from ...store.accounts import commit_pool_change
from ...store.error_rules import seed_error_rules
from ...store.models import ErrorMessage, ErrorRule
from ..audit import AuditedRoute
from ..deps import ServicesDep, SessionDep, admin_user
from ..envelope import FastJSONResponse, created, ok
from ..numbers import PathId
from ..pool_schemas import ErrorMessageCreate, ErrorMessageUpdate, ErrorRuleCreate, ErrorRuleUpdate
from ..pool_views import error_message_view, error_rule_view

router = APIRouter(
    prefix="/api/admin/error-rules",
    tags=["admin: error rules"],
    route_class=AuditedRoute,
    dependencies=[Depends(admin_user)],
)

messages_router = APIRouter(
    prefix="/api/admin/error-messages",
    tags=["admin: error messages"],
    route_class=AuditedRoute,
    dependencies=[Depends(admin_user)],
)


async def _get_rule(session: AsyncSession, rule_id: int) -> ErrorRule:
    rule = await session.get(ErrorRule, rule_id)
    if rule is None:
        raise NotFound("error rule not found")
    return rule


async def _get_message(session: AsyncSession, message_id: int) -> ErrorMessage:
    message = await session.get(ErrorMessage, message_id)
    if message is None:
        raise NotFound("error message not found")
    return message


@router.get("")
async def list_rules(session: SessionDep) -> FastJSONResponse:
    # The order the gateway tries them in: highest priority first.
    rules = await session.scalars(select(ErrorRule).order_by(ErrorRule.priority.desc(), ErrorRule.id))
    return ok([error_rule_view(r) for r in rules])


@router.post("", status_code=201)
async def create_rule(body: ErrorRuleCreate, services: ServicesDep, session: SessionDep) -> FastJSONResponse:
    rule = ErrorRule(**body.model_dump(), is_default=False)
    session.add(rule)
    await commit_pool_change(session, services.state)
    return created(error_rule_view(rule))


@router.post("/reset-defaults")
async def reset_default_rules(services: ServicesDep, session: SessionDep) -> FastJSONResponse:
    """Put the seeded rules back as shipped; rules the admin added are kept."""
    result = await session.execute(delete(ErrorRule).where(ErrorRule.is_default.is_(True)))
    seeded = await seed_error_rules(session)
    await commit_pool_change(session, services.state)
    return ok({"deleted": result.rowcount, "created": seeded})  # type: ignore[attr-defined]


@router.get("/{rule_id}")
async def get_rule(rule_id: PathId, session: SessionDep) -> FastJSONResponse:
    return ok(error_rule_view(await _get_rule(session, rule_id)))


@router.put("/{rule_id}")
async def update_rule(
    rule_id: PathId, body: ErrorRuleUpdate, services: ServicesDep, session: SessionDep
) -> FastJSONResponse:
    rule = await _get_rule(session, rule_id)
    for name, value in body.model_dump(exclude_unset=True).items():
        if value is not None:
            setattr(rule, name, value)
    await commit_pool_change(session, services.state)
    return ok(error_rule_view(rule))


@router.delete("/{rule_id}")
async def delete_rule(rule_id: PathId, services: ServicesDep, session: SessionDep) -> FastJSONResponse:
    await session.delete(await _get_rule(session, rule_id))
    await commit_pool_change(session, services.state)
    return ok(None)


@router.put("/{rule_id}/toggle")
async def toggle_rule(rule_id: PathId, services: ServicesDep, session: SessionDep) -> FastJSONResponse:
    rule = await _get_rule(session, rule_id)
    rule.enabled = not rule.enabled
    await commit_pool_change(session, services.state)
    return ok({"id": rule.id, "enabled": rule.enabled})


# Error messages are cached by the gateway with the rules, so their writes bump the pool version too.
@messages_router.get("")
async def list_messages(session: SessionDep) -> FastJSONResponse:
    messages = await session.scalars(select(ErrorMessage).order_by(ErrorMessage.status_code, ErrorMessage.id))
    return ok([error_message_view(m) for m in messages])


@messages_router.post("", status_code=201)
async def create_message(
    body: ErrorMessageCreate, services: ServicesDep, session: SessionDep
) -> FastJSONResponse:
    message = ErrorMessage(**body.model_dump())
    session.add(message)
    await commit_pool_change(session, services.state)
    return created(error_message_view(message))


@messages_router.get("/{message_id}")
async def get_message(message_id: PathId, session: SessionDep) -> FastJSONResponse:
    return ok(error_message_view(await _get_message(session, message_id)))


@messages_router.put("/{message_id}")
async def update_message(
    message_id: PathId, body: ErrorMessageUpdate, services: ServicesDep, session: SessionDep
) -> FastJSONResponse:
    message = await _get_message(session, message_id)
    for name, value in body.model_dump(exclude_unset=True).items():
        if value is not None:
            setattr(message, name, value)
    await commit_pool_change(session, services.state)
    return ok(error_message_view(message))


@messages_router.delete("/{message_id}")
async def delete_message(message_id: PathId, services: ServicesDep, session: SessionDep) -> FastJSONResponse:
    await session.delete(await _get_message(session, message_id))
    await commit_pool_change(session, services.state)
    return ok(None)


@messages_router.put("/{message_id}/toggle")
async def toggle_message(message_id: PathId, services: ServicesDep, session: SessionDep) -> FastJSONResponse:
    message = await _get_message(session, message_id)
    message.enabled = not message.enabled
    await commit_pool_change(session, services.state)
    return ok({"id": message.id, "enabled": message.enabled})
