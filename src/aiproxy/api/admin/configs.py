"""Admin: runtime configuration, grouped by category, and the cross-instance reload of every runtime cache."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from ...runtime_configs import CONFIG_SPECS
from ..audit import AuditedRoute
from ..deps import ServicesDep, admin_user
from ..envelope import FastJSONResponse, ok
from ..schemas import ConfigUpdate

router = APIRouter(
    prefix="/api/admin/configs",
    tags=["admin: configs"],
    route_class=AuditedRoute,
    dependencies=[Depends(admin_user)],
)


@router.get("")
async def all_configs(services: ServicesDep) -> FastJSONResponse:
    return ok(services.configs.grouped())


@router.get("/schema")
async def config_schema(services: ServicesDep) -> FastJSONResponse:
    """Every key with its type, default, bounds and current value (what the console edits)."""
    return ok(
        [
            {
                "category": spec.category,
                "key": spec.key,
                "type": spec.type.__name__,
                "default": spec.default,
                "value": services.configs.get(spec.key),
                "description": spec.description,
                "minimum": spec.minimum,
                "maximum": spec.maximum,
            }
            for spec in CONFIG_SPECS
        ]
    )


@router.get("/category/{category}")
async def category_configs(category: str, services: ServicesDep) -> FastJSONResponse:
    return ok(services.configs.category(category))


@router.put("")
async def update_config(body: ConfigUpdate, services: ServicesDep) -> FastJSONResponse:
    value = await services.configs.set(body.key, body.value, category=body.category or None)
    return ok({"key": body.key, "value": value})


@router.get("/sync/status")
async def sync_status(services: ServicesDep) -> FastJSONResponse:
    return ok(await services.configs.sync_status())


@router.post("/sync/trigger")
async def sync_trigger(services: ServicesDep) -> FastJSONResponse:
    """Every worker of every instance reloads every runtime cache from the database (this one
    before answering, the others at their next poll); answers what this one reloaded."""
    version, report = await services.configs.trigger_sync()
    return ok(
        {
            "version": version,
            "reloaded": list(report.reloaded),
            "failed": list(report.failed),
            **await services.configs.sync_status(),
        }
    )
