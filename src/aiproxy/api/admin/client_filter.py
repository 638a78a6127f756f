"""Admin: the client filter (settings, client types, their rules) and a dry run of a sample request.

Every change is committed and announced with `commit_pool_change`: each instance rebuilds its
compiled filter when the pool version moves (`/reload` does only that).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from ...gateway.client_filter import build_filter
from ...store import client_filter as store
from ...store.accounts import bump_pool_version, commit_pool_change
from ..audit import AuditedRoute
from ..client_filter_schemas import (
    ClientTypeCreate,
    ClientTypeUpdate,
    ClientTypeView,
    FilterConfigUpdate,
    FilterConfigView,
    FilterTest,
    RuleCreate,
    RuleUpdate,
    RuleView,
)
from ..deps import ServicesDep, SessionDep, admin_user
from ..envelope import FastJSONResponse, created, ok
from ..numbers import IdFilter, PathId
from ..openapi import error_responses

router = APIRouter(
    prefix="/api/admin/client-filter",
    tags=["admin: client filter"],
    route_class=AuditedRoute,
    dependencies=[Depends(admin_user)],
)


def _type(row: object) -> dict[str, object]:
    return ClientTypeView.model_validate(row).model_dump()


def _rule(row: object) -> dict[str, object]:
    return RuleView.model_validate(row).model_dump()


# --- settings --------------------------------------------------------------------------------


@router.get("/config")
async def get_config(session: SessionDep) -> FastJSONResponse:
    config = await store.get_config(session)
    await session.commit()  # created with the defaults on first read
    return ok(FilterConfigView.model_validate(config).model_dump())


@router.put("/config")
async def update_config(
    body: FilterConfigUpdate, session: SessionDep, services: ServicesDep
) -> FastJSONResponse:
    config = await store.update_config(session, changes=body.model_dump(exclude_none=True))
    await commit_pool_change(session, services.state)
    return ok(FilterConfigView.model_validate(config).model_dump())


@router.post("/reload")
async def reload_filter(session: SessionDep, services: ServicesDep) -> FastJSONResponse:
    """Every instance reads the filter from the database again (within a second)."""
    config, types, rules = await store.load_all(session)
    compiled = build_filter(config, types, rules)
    await bump_pool_version(services.state)
    return ok(
        {
            "client_types": len(compiled.types),
            "rules": sum(len(t.rules) for t in compiled.types),
            "filter_enabled": compiled.enabled,
            "filter_mode": compiled.mode,
        }
    )


@router.post("/test")
async def test_request(body: FilterTest, session: SessionDep) -> FastJSONResponse:
    """How the saved filter judges a sample request, as if it were enabled; says which rule decided."""
    compiled = build_filter(*await store.load_all(session))
    headers = {
        name.lower().encode("latin-1", "replace"): value.encode("latin-1", "replace")
        for name, value in body.headers.items()
    }
    user_agent = body.user_agent or body.headers.get("user-agent", "") or body.headers.get("User-Agent", "")
    headers[b"user-agent"] = user_agent.encode("latin-1", "replace")
    strict = compiled.strict if body.mode is None else body.mode == "strict"
    found = compiled.identify(user_agent, body.path, headers, body.body, strict=strict)
    allowed = compiled.admits(found)
    return ok(
        {
            "allowed": allowed,
            "client_type": found.client,
            "filter_enabled": compiled.enabled,
            "mode": "strict" if strict else "simple",
            "match_details": {
                "ua_matched": found.ua_matched,
                "headers_valid": found.headers_valid,
                "body_valid": found.body_valid,
            },
            "rule_id": found.rule_id,
            "reason": found.reason
            or (f"{found.client} is not in allowed_clients" if found.client and not allowed else ""),
        }
    )


# --- client types ----------------------------------------------------------------------------


@router.get("/client-types")
async def list_client_types(session: SessionDep) -> FastJSONResponse:
    return ok([_type(t) for t in await store.list_types(session)])


@router.post("/client-types", status_code=201)
async def create_client_type(
    body: ClientTypeCreate, session: SessionDep, services: ServicesDep
) -> FastJSONResponse:
    client_type = await store.create_type(session, fields=body.model_dump(exclude_none=True))
    await commit_pool_change(session, services.state)
    return created(_type(client_type))


@router.get("/client-types/{type_id}")
async def get_client_type(type_id: PathId, session: SessionDep) -> FastJSONResponse:
    client_type = await store.get_type(session, type_id)
    rules = await store.list_rules(session, client_type_id=type_id)
    return ok({**_type(client_type), "rules": [_rule(r) for r in rules]})


@router.put("/client-types/{type_id}")
async def update_client_type(
    type_id: PathId, body: ClientTypeUpdate, session: SessionDep, services: ServicesDep
) -> FastJSONResponse:
    client_type = await store.update_type(
        session, type_id=type_id, changes=body.model_dump(exclude_none=True)
    )
    await commit_pool_change(session, services.state)
    return ok(_type(client_type))


@router.delete("/client-types/{type_id}")
async def delete_client_type(type_id: PathId, session: SessionDep, services: ServicesDep) -> FastJSONResponse:
    """Its rules go with it. Keys and packages naming it then match no client (refused)."""
    await store.delete_type(session, type_id=type_id)
    await commit_pool_change(session, services.state)
    return ok(None)


@router.put("/client-types/{type_id}/toggle")
async def toggle_client_type(type_id: PathId, session: SessionDep, services: ServicesDep) -> FastJSONResponse:
    client_type = await store.get_type(session, type_id)
    client_type.enabled = not client_type.enabled
    await commit_pool_change(session, services.state)
    return ok(_type(client_type))


# --- rules -----------------------------------------------------------------------------------


@router.get("/rules")
async def list_rules(session: SessionDep, client_type_id: IdFilter = None) -> FastJSONResponse:
    return ok([_rule(r) for r in await store.list_rules(session, client_type_id=client_type_id)])


@router.post("/rules", status_code=201, responses=error_responses(404))  # an unknown client_type_id
async def create_rule(body: RuleCreate, session: SessionDep, services: ServicesDep) -> FastJSONResponse:
    rule = await store.create_rule(session, fields=body.model_dump(exclude_none=True))
    await commit_pool_change(session, services.state)
    return created(_rule(rule))


@router.get("/rules/{rule_id}")
async def get_rule(rule_id: PathId, session: SessionDep) -> FastJSONResponse:
    return ok(_rule(await store.get_rule(session, rule_id)))


@router.put("/rules/{rule_id}")  # 404 also for an unknown client_type_id (the path has one anyway)
async def update_rule(
    rule_id: PathId, body: RuleUpdate, session: SessionDep, services: ServicesDep
) -> FastJSONResponse:
    rule = await store.update_rule(session, rule_id=rule_id, changes=body.model_dump(exclude_none=True))
    await commit_pool_change(session, services.state)
    return ok(_rule(rule))


@router.delete("/rules/{rule_id}")
async def delete_rule(rule_id: PathId, session: SessionDep, services: ServicesDep) -> FastJSONResponse:
    await store.delete_rule(session, rule_id=rule_id)
    await commit_pool_change(session, services.state)
    return ok(None)


@router.put("/rules/{rule_id}/toggle")
async def toggle_rule(rule_id: PathId, session: SessionDep, services: ServicesDep) -> FastJSONResponse:
    rule = await store.get_rule(session, rule_id)
    rule.enabled = not rule.enabled
    await commit_pool_change(session, services.state)
    return ok(_rule(rule))
