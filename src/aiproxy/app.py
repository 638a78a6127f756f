"""Builds the ASGI application: routers, error handlers and the lifespan that owns resources."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from . import __version__
from .api import api_keys, auth, catalog, metrics, packages, profile, usage
from .api.admin import account_groups as admin_account_groups
from .api.admin import accounts as admin_accounts
from .api.admin import api_keys as admin_api_keys
from .api.admin import cache as admin_cache
from .api.admin import client_filter as admin_client_filter
from .api.admin import configs as admin_configs
from .api.admin import error_rules as admin_error_rules
from .api.admin import health_check as admin_health_check
from .api.admin import logs as admin_logs
from .api.admin import models as admin_models
from .api.admin import monitor as admin_monitor
from .api.admin import oauth as admin_oauth
from .api.admin import operation_logs as admin_operation_logs
from .api.admin import packages as admin_packages
from .api.admin import proxy_configs as admin_proxy_configs
from .api.admin import proxy_test as admin_proxy_test
from .api.admin import system_logs as admin_system_logs
from .api.admin import users as admin_users
from .api.envelope import FastJSONResponse
from .api.errors import install_error_handlers
from .api.openapi import install_openapi
from .billing.journal import Journal
from .billing.model_catalog import seed_models
from .billing.recorder import UsageRecorder
from .billing.retention import RetentionJob
from .config import Settings, load_settings
from .gateway.asgi import Dispatcher
from .gateway.cache_reloads import register_caches
from .gateway.pipeline import Gateway
from .observe.access_log import AccessLog
from .observe.log_files import LogJanitor
from .observe.logs import log_dir
from .runtime_caches import RuntimeCaches
from .runtime_configs import RuntimeConfigs
from .security.secretbox import SecretBox
from .services import Services
from .store import users as user_store
from .store.db import Database
from .store.error_rules import seed_error_rules
from .store.migrate import upgrade_to_head
from .store.models import AIModel, User
from .store.state import SharedState, open_state
from .web import Console

log = logging.getLogger("aiproxy")

#: Seconds each dependency gets to answer GET /ready: below the 1 s a load balancer or Kubernetes
#: probe typically waits, so a slow dependency shows up as "not ready" rather than a probe timeout.
READY_TIMEOUT = 0.8
BOOTSTRAP_LOCK = "bootstrap:lock"
BOOTSTRAP_WAIT = 60.0  # seconds: seeding a fresh database takes well under one
GC_YOUNG_THRESHOLD = 10_000  # net allocations of container objects between young collections


async def _bootstrap(services: Services) -> None:
    """First start: create the admin and fill the model table.

    Several workers or instances starting together on a fresh database take turns (a shared-state
    lock); where the lock is not shared (several workers without Redis) the one that loses the race
    to create the rows finds them made on its second try."""
    try:
        async with services.state.lock(BOOTSTRAP_LOCK, BOOTSTRAP_WAIT, wait=BOOTSTRAP_WAIT):
            created = await _seed(services)
    except IntegrityError:
        created = await _seed(services)
    if created is not None:
        user, password = created
        if services.settings.admin_password:
            log.warning(
                "created the first admin '%s' with the password from AIPROXY_ADMIN_PASSWORD", user.username
            )
        else:
            # Printed once, on the console only: it is never written to a log file.
            print(
                f"\n  aiproxy: created the first admin\n    username: {user.username}\n"
                f"    password: {password}\n  (shown only now; change it in the console)\n",
                flush=True,
            )


async def _seed(services: Services) -> tuple[User, str] | None:
    async with services.db.transaction() as session:
        created = await user_store.ensure_first_admin(session, password=services.settings.admin_password)
        if not await session.scalar(select(func.count()).select_from(AIModel)):
            await seed_models(session, reset=False)
        await seed_error_rules(session)
    return created


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    settings.ensure_data_dir()
    await asyncio.to_thread(upgrade_to_head, settings.resolved_database_url, settings.data_dir)
    db = Database(settings.resolved_database_url)
    state = open_state(settings.redis_url, prefix=settings.redis_prefix, timeout=settings.redis_timeout)
    caches = RuntimeCaches()
    configs = RuntimeConfigs(db, poll_interval=settings.config_poll_interval, caches=caches)
    services = Services(
        settings=settings,
        db=db,
        state=state,
        configs=configs,
        caches=caches,
        secrets=SecretBox(settings.resolved_secret_key),
        jwt_secret=settings.resolved_jwt_secret,
    )
    app.state.services = services
    journal = Journal(settings.journal_dir, fsync=settings.journal_fsync) if settings.journal else None
    recorder = UsageRecorder(db, flush_interval=settings.recorder_flush_interval, journal=journal)
    gateway = Gateway(services, recorder)
    register_caches(gateway, caches)  # after the configs: a sync reloads them first
    app.state.gateway = gateway
    retention = RetentionJob(services)
    log_janitor = LogJanitor(log_dir(settings), lambda: int(configs.get("log_retention_days")))
    try:
        if not await state.ping():
            raise RuntimeError(f"shared state ({state.kind}) is not reachable: check AIPROXY_REDIS_URL")
        if settings.workers > 1 and state.kind == "memory":
            log.warning(
                "%d workers share no state without AIPROXY_REDIS_URL: limits and captchas are per worker",
                settings.workers,
            )
        await configs.load()
        await _bootstrap(services)
        configs.start()
        log_janitor.start()
        await recorder.recover(settings.journal_dir)  # what crashed processes journaled, before serving
        await gateway.start()
        retention.start()
        # Objects alive after start-up (modules, ORM metadata, the pool) never die: keep them out of
        # the collector's full passes, which otherwise pause the loop for tens of milliseconds.
        gc.freeze()
        # Requests in flight hold a few hundred container objects each, so at the default threshold
        # (700 more allocations than frees) young collections ran ~60 times a second under load, 4% of
        # the CPU; at 10,000 they run a few times a minute, each under ~7 ms (docs/performance.md).
        gc.set_threshold(GC_YOUNG_THRESHOLD, 50, 100)
        log.info(
            "aiproxy %s ready (database: %s, state: %s)",
            __version__,
            "sqlite" if db.is_sqlite else "postgresql",
            state.kind,
        )
        yield
    finally:
        await retention.close()  # a batch under way is rolled back: nothing half-deleted
        await gateway.close()  # flushes every recorded request before the database closes
        await log_janitor.close()
        await configs.stop()
        await state.close()
        await db.close()


async def _database_ready(db: Database) -> bool:
    try:
        async with asyncio.timeout(READY_TIMEOUT), db.session() as session:
            await session.execute(text("SELECT 1"))
    except Exception as exc:  # whatever the cause, the answer is "not ready"; the log says why
        log.warning("readiness: database check failed: %s: %s", type(exc).__name__, exc)
        return False
    return True


async def _state_ready(state: SharedState) -> bool:
    try:
        return await asyncio.wait_for(state.ping(), READY_TIMEOUT)
    except TimeoutError:
        return False


def create_api(settings: Settings | None = None) -> FastAPI:
    """The console/admin JSON API (FastAPI); it also owns the lifespan of shared resources."""
    app = FastAPI(
        title="aiproxy",
        version=__version__,
        description="Multi-tenant AI API relay: console and admin JSON API.",
        lifespan=lifespan,
        default_response_class=FastJSONResponse,
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )
    app.state.settings = settings or load_settings()
    install_error_handlers(app)
    install_openapi(app)

    @app.get("/health", tags=["health"])
    async def health() -> FastJSONResponse:
        """Liveness: the process answers. Checks no dependency, so a Redis or database outage never
        gets a healthy process restarted (it serves what it can, see /ready)."""
        return FastJSONResponse({"status": "ok"})

    @app.get("/ready", tags=["health"])
    async def ready(request: Request) -> FastJSONResponse:
        """Readiness: the database and the shared state both answer within READY_TIMEOUT."""
        services: Services = request.app.state.services
        database_ok, state_ok = await asyncio.gather(
            _database_ready(services.db), _state_ready(services.state)
        )
        state_word = "memory" if services.state.kind == "memory" else "ok"
        body = {
            "status": "ready" if database_ok and state_ok else "unavailable",
            "database": "ok" if database_ok else "unavailable",
            "state": state_word if state_ok else "unavailable",
        }
        return FastJSONResponse(body, status_code=200 if database_ok and state_ok else 503)

    for router in (
        metrics.router,
        auth.router,
        profile.router,
        api_keys.router,
        catalog.router,
        packages.router,
        usage.router,
        admin_users.router,
        admin_api_keys.router,
        admin_models.router,
        admin_packages.router,
        admin_configs.router,
        admin_operation_logs.router,
        admin_accounts.router,
        admin_account_groups.router,
        admin_proxy_configs.router,
        admin_proxy_test.router,
        admin_error_rules.router,
        admin_error_rules.messages_router,
        admin_logs.router,
        admin_system_logs.router,
        admin_oauth.router,
        admin_client_filter.router,
        admin_monitor.router,
        *admin_health_check.routers,
        *admin_cache.routers,
    ):
        app.include_router(router)
    return app


def create_app(settings: Settings | None = None) -> AccessLog:
    """The whole relay: proxy endpoints on the raw-ASGI gateway, everything else on the API, one
    access-log line per request around both."""
    api = create_api(settings)
    settings = api.state.settings
    return AccessLog(
        # Proxy paths go straight to the gateway; the console only sees what is left.
        Dispatcher(Console(api)),
        trust_proxy_headers=settings.trust_proxy_headers,
        proxy_lines=settings.proxy_access_log,
    )
