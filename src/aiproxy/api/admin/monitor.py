"""Admin: the monitor — host, shared state, database, accounts, users and today's traffic.

`GET /api/admin/monitor` answers every view at once under the contract's names; each view has
its own route too. `/mysql` keeps the contract's name for the database view and reports
whichever database is configured (SQLite or PostgreSQL); `/database` is the same view.

Figures read from the database are the same on every instance; `system` is the host and the
worker process that answered (with several workers, each answers for itself). The queries and
what each figure means are in `observe/` (monitor.py, database_stats.py, state_stats.py,
host_stats.py); each view answers within 100 ms on a database of a million request logs.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request

from ...errors import AppError
from ...observe import monitor
from ...observe.database_stats import database_stats
from ...observe.host_stats import HostSampler
from ...observe.state_stats import account_slots, state_stats
from ..audit import AuditedRoute
from ..deps import ServicesDep, SessionDep, admin_user, get_services
from ..envelope import FastJSONResponse, ok
from ..openapi import error_responses

log = logging.getLogger(__name__)

router = APIRouter(
    prefix="/api/admin/monitor",
    tags=["admin: monitor"],
    route_class=AuditedRoute,
    dependencies=[Depends(admin_user)],
    # A failure the views cannot report as a figure (`connected`/`reachable: false`) answers 500.
    responses=error_responses(500),
)


def host_sampler(request: Request) -> HostSampler:
    """This process's sampler, made on first use: CPU usage is measured between two calls."""
    sampler: HostSampler | None = getattr(request.app.state, "host_sampler", None)
    if sampler is None:
        settings = get_services(request).settings
        sampler = HostSampler(data_dir=settings.data_dir.resolve(), workers=settings.workers)
        request.app.state.host_sampler = sampler
    return sampler


HostDep = Annotated[HostSampler, Depends(host_sampler)]


@contextlib.contextmanager
def _collecting() -> Iterator[None]:
    """The contract's 500 (`获取监控数据失败: …`), naming the kind of failure, never its details."""
    try:
        yield
    except AppError:
        raise
    except Exception as exc:
        log.exception("monitor: collecting the figures failed")
        cause = exc.exceptions[0] if isinstance(exc, ExceptionGroup) else exc  # the overview's task group
        raise AppError(f"获取监控数据失败: {type(cause).__name__}") from exc


def _now() -> datetime:
    return datetime.now(UTC)


@router.get("")
async def monitor_overview(services: ServicesDep, session: SessionDep, host: HostDep) -> FastJSONResponse:
    """Every view at once: system, cache, mysql (the configured database), accounts, users, today_usage."""
    with _collecting():
        data = await monitor.overview(session, db=services.db, state=services.state, host=host, now=_now())
    return ok(data)


@router.get("/system")
async def monitor_system(host: HostDep) -> FastJSONResponse:
    """CPU, memory and the data directory's disk of the host; the answering worker process."""
    with _collecting():
        return ok(await host.stats())


@router.get("/cache")
async def monitor_cache(services: ServicesDep, session: SessionDep) -> FastJSONResponse:
    """Sticky sessions, concurrency slots and keys in shared state; accounts out of rotation."""
    with _collecting():
        data = await state_stats(state=services.state)
        data["unavailable_count"] = await monitor.unavailable_count(session, now=_now())
    return ok(data)


@router.get("/mysql")
@router.get("/database")
async def monitor_database(services: ServicesDep) -> FastJSONResponse:
    """The configured database (SQLite or PostgreSQL): sizes, tables, rows, connections."""
    with _collecting():
        return ok(await database_stats(db=services.db))


@router.get("/accounts")
async def monitor_accounts(services: ServicesDep, session: SessionDep) -> FastJSONResponse:
    """Upstream accounts by status and type, in rotation, cooling down (until when), slots in use."""
    with _collecting():
        ids = await monitor.account_ids(session)
        slots = await account_slots(state=services.state, account_ids=ids)
        return ok(await monitor.account_stats(session, now=_now(), slots=slots))


@router.get("/users")
async def monitor_users(session: SessionDep) -> FastJSONResponse:
    """Users: total, active today, new today, today's top users by cost."""
    with _collecting():
        return ok(await monitor.user_stats(session, now=_now()))


@router.get("/today")
async def monitor_today(session: SessionDep) -> FastJSONResponse:
    """Today's (UTC) cost and tokens, requests, successes and errors, latency, by platform and model."""
    with _collecting():
        return ok(await monitor.today_stats(session, now=_now()))
