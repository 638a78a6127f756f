"""The `aiproxy` command: serve, migrate, create-admin, config, mock-upstream."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import sys
from collections.abc import Sequence

from . import __version__
from .config import Settings, load_settings
from .errors import AppError


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _migrate(settings: Settings) -> None:
    from .store.migrate import upgrade_to_head

    settings.ensure_data_dir()
    upgrade_to_head(settings.resolved_database_url, settings.data_dir)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from .gateway.asgi import MAX_BODY
    from .observe.logs import configure_logging
    from .observe.metrics import prepare_workers
    from .serving import connection_cap

    host = args.host or settings.host
    port = args.port if args.port is not None else settings.port
    workers = args.workers or settings.workers
    # The console as before plus the category files in <data dir>/logs; uvicorn applies the same
    # config again in each worker process it starts (a config made here alone would not reach them).
    log_config = configure_logging(settings)
    # Migrate once here so several workers do not race; the lifespan finds the schema current.
    _migrate(settings)
    prepare_workers(settings.data_dir, workers)  # their metrics are added up on /metrics
    print(f"aiproxy {__version__} listening on http://{host}:{port}", flush=True)
    uvicorn.run(
        "aiproxy.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="aiproxy.serving:GuardedHttpToolsProtocol",
        timeout_keep_alive=int(settings.keepalive_timeout + 0.999),
        limit_concurrency=connection_cap(settings.max_connections),
        ws_max_size=MAX_BODY,  # a Responses WebSocket frame may carry a whole conversation, as a body may
        log_config=log_config,
        log_level=settings.log_level.lower(),
        access_log=False,
        # Client addresses are the relay's own business (AIPROXY_TRUST_PROXY_HEADERS); uvicorn's
        # middleware would otherwise trust forwarded headers from 127.0.0.1 on every request.
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=30,
    )
    return 0


def cmd_migrate(_args: argparse.Namespace, settings: Settings) -> int:
    _migrate(settings)
    print("database is at the latest schema")
    return 0


async def _create_admin(settings: Settings, username: str, password: str) -> str:
    from .store import users as user_store
    from .store.db import Database

    db = Database(settings.resolved_database_url)
    try:
        async with db.transaction() as session:
            user = await user_store.find_user_by_name(session, username)
            if user is None:
                await user_store.create_user(session, username=username, password=password, role="admin")
                return "created"
            user.role = "admin"
            user.status = "active"
            user_store.set_password(user, password)
            return "updated"
    finally:
        await db.close()


def cmd_create_admin(args: argparse.Namespace, settings: Settings) -> int:
    password = args.password or settings.admin_password
    if not password:
        if not sys.stdin.isatty():
            print("error: give --password or set AIPROXY_ADMIN_PASSWORD", file=sys.stderr)
            return 2
        password = getpass.getpass(f"password for {args.username}: ")
    if len(password) < 6:
        print("error: the password needs at least 6 characters", file=sys.stderr)
        return 2
    _migrate(settings)
    outcome = asyncio.run(_create_admin(settings, args.username, password))
    print(f"admin '{args.username}' {outcome}")
    return 0


async def _config(settings: Settings, action: str, key: str | None, pairs: list[str]) -> int:
    from .runtime_configs import CONFIG_SPECS, RuntimeConfigs, coerce, find_spec
    from .store.db import Database

    db = Database(settings.resolved_database_url)
    try:
        configs = RuntimeConfigs(db)
        await configs.load()
        if action == "list":
            for spec in CONFIG_SPECS:
                print(f"{spec.category:10} {spec.key:30} {json.dumps(configs.get(spec.key))}")
        elif action == "get":
            assert key is not None
            find_spec(key)
            print(json.dumps(configs.get(key)))
        else:
            if len(pairs) % 2:
                print("error: config set takes KEY VALUE pairs; the last key has no value", file=sys.stderr)
                return 2
            changes = list(zip(pairs[::2], pairs[1::2], strict=True))
            for name, raw in changes:  # every value checked before any is stored
                coerce(find_spec(name), raw)
            for name, raw in changes:
                stored = await configs.set(name, raw)
                print(f"{name} = {json.dumps(stored)}")
        return 0
    except AppError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    finally:
        await db.close()


def cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    _migrate(settings)
    return asyncio.run(_config(settings, args.action, getattr(args, "key", None), getattr(args, "pairs", [])))


def cmd_mock_upstream(args: argparse.Namespace, _settings: Settings) -> int:
    from .mock_upstream import run

    print(f"mock upstream listening on http://{args.host}:{args.port}", flush=True)
    run(args.host, args.port)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aiproxy", description="Multi-tenant AI API relay")
    parser.add_argument("--version", action="version", version=f"aiproxy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the relay (migrates the database first)")
    serve.add_argument("--host", help="bind address (default AIPROXY_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default AIPROXY_PORT or 8080)")
    serve.add_argument("--workers", type=int, help="worker processes (default AIPROXY_WORKERS or 1)")
    serve.set_defaults(func=cmd_serve)

    migrate = sub.add_parser("migrate", help="bring the database schema up to date")
    migrate.set_defaults(func=cmd_migrate)

    admin = sub.add_parser("create-admin", help="create an admin, or reset an existing user to admin")
    admin.add_argument("--username", default="admin")
    admin.add_argument("--password", help="default AIPROXY_ADMIN_PASSWORD, else asked for")
    admin.set_defaults(func=cmd_create_admin)

    config = sub.add_parser("config", help="read or change runtime configs")
    config_sub = config.add_subparsers(dest="action", required=True)
    config_sub.add_parser("list", help="every key with its current value")
    get = config_sub.add_parser("get", help="one value")
    get.add_argument("key")
    set_ = config_sub.add_parser(
        "set", help="change values: KEY VALUE [KEY VALUE ...] (running relays pick them up within seconds)"
    )
    set_.add_argument("pairs", nargs="+", metavar="KEY VALUE")
    config.set_defaults(func=cmd_config)

    mock = sub.add_parser("mock-upstream", help="run the fake vendor upstream used by tests and benchmarks")
    mock.add_argument("--host", default="127.0.0.1")
    mock.add_argument("--port", type=int, default=9090)
    mock.set_defaults(func=cmd_mock_upstream)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = load_settings()
    _configure_logging(settings.log_level)
    # Quiet Alembic's per-migration INFO lines unless asked for.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    return int(args.func(args, settings))
