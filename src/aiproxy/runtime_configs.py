"""Runtime configuration: typed settings an admin changes while the relay runs.

Every key is declared once in `CONFIG_SPECS` with its category, type and default; the
`system_configs` table stores only values that differ from the default. Each instance
keeps a cache; a change bumps a version row in the same table, and every instance
reloads when it sees a newer version (a cheap background poll), so all instances, and a
running relay edited from the shell with `aiproxy config set`, converge within seconds.

The same poll carries the reload of every runtime cache (runtime_caches.py): a second
version row, bumped only by `trigger_sync`, makes each worker of each instance reload
all of them, whatever shared state it has. The database is the one thing every worker
shares, also on a single host whose workers keep their shared state in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from .errors import BadRequest
from .runtime_caches import ReloadReport, RuntimeCaches
from .store.db import Database
from .store.models import SystemConfig

log = logging.getLogger(__name__)

ConfigValue = bool | int | float | str
VERSION_KEY = "_config_version"
RELOAD_KEY = "_reload_version"  # bumped by trigger_sync: every runtime cache is reloaded


@dataclass(frozen=True, slots=True)
class ConfigSpec:
    category: str
    key: str
    type: type
    default: ConfigValue
    description: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()


def _spec(category: str, key: str, default: ConfigValue, description: str, **kw: Any) -> ConfigSpec:
    return ConfigSpec(category, key, type(default), default, description, **kw)


CONFIG_SPECS: tuple[ConfigSpec, ...] = (
    _spec("system", "site_name", "AI Proxy", "Name shown in the console"),
    _spec("system", "allow_register", True, "Whether visitors may register accounts"),
    _spec("system", "default_max_concurrency", 10, "max_concurrency given to new users", minimum=0),
    _spec("security", "captcha_enabled", True, "Require an image captcha on login and register"),
    _spec("security", "captcha_ttl", 300, "Seconds a captcha stays valid", minimum=30, maximum=3600),
    _spec(
        "security", "captcha_rate_limit", 30, "Captcha images per IP per minute (0 = unlimited)", minimum=0
    ),
    _spec("security", "login_rate_limit_enabled", True, "Limit failed logins per IP"),
    _spec("security", "login_rate_limit_max", 10, "Login attempts per IP per window", minimum=1),
    _spec("security", "login_rate_limit_window", 300, "Login rate-limit window in seconds", minimum=1),
    _spec("proxy", "timeout", 120, "Upstream request timeout in seconds", minimum=1, maximum=3600),
    _spec("proxy", "retry_count", 5, "Account switches allowed per request", minimum=0, maximum=20),
    _spec("proxy", "session_ttl", 30, "Sticky-session lifetime in minutes", minimum=1),
    _spec("proxy", "allow_unknown_models", True, "Route models missing from the model table by prefix"),
    _spec(
        "proxy",
        "rate_limit_cooldown",
        3600,
        "Seconds an account rests after a 429 without reset header",
        minimum=1,
    ),
    _spec("proxy", "overload_cooldown", 60, "Seconds an account rests after 529/503", minimum=1),
    _spec(
        "proxy",
        "websocket_upstream",
        True,
        "Relay Responses WebSocket turns over the vendor's WebSocket (API-key accounts); off = over HTTP",
    ),
    _spec(
        "proxy",
        "websocket_idle_timeout",
        600,
        "Seconds a Responses WebSocket may stay idle between turns before the relay closes it",
        minimum=5,
        maximum=86400,
    ),
    _spec(
        "billing",
        "global_price_rate",
        1.0,
        "Price rate for everyone; ≠1 overrides user and key rates",
        minimum=0,
    ),
    _spec(
        "billing",
        "require_package",
        False,
        "Refuse requests of users without an active package (403)",
    ),
    # What subscription (OAuth) upstreams expect a request to look like. Observed values that
    # change with the vendors' CLIs: kept here so an admin can follow them without a release.
    _spec(
        "oauth",
        "claude_oauth_betas",
        "claude-code-20250219,oauth-2025-04-20",
        "anthropic-beta values sent first on Claude OAuth requests (the client's are appended)",
    ),
    _spec(
        "oauth",
        "claude_oauth_user_agent",
        "claude-cli/2.1.197 (external, cli)",
        "User-Agent for Claude OAuth requests from clients other than Claude Code",
    ),
    _spec(
        "oauth",
        "claude_code_system_prompt",
        "You are Claude Code, Anthropic's official CLI for Claude.",
        "First system block Claude OAuth requests must carry (added when the client did not send it)",
    ),
    _spec(
        "oauth",
        "codex_originator",
        "codex_cli_rs",
        "originator header for Codex (ChatGPT) requests from clients that send none",
    ),
    _spec(
        "health_check",
        "health_check_enabled",
        True,
        "Probe accounts out of rotation (rate limited, overloaded, invalid) periodically",
    ),
    _spec(
        "health_check",
        "health_check_interval",
        300,
        "Seconds between health-check sweeps; an account is probed once it rested this long",
        minimum=1,
        maximum=86400,
    ),
    _spec("log", "capture_request_body", False, "Store request bodies in request logs"),
    _spec("log", "capture_body_max_bytes", 16384, "Largest body stored per request log", minimum=0),
    _spec("log", "request_log_retention_days", 30, "Days request logs are kept", minimum=1),
    _spec("log", "operation_log_retention_days", 90, "Days operation logs are kept", minimum=1),
    _spec(
        "log",
        "log_cleanup_interval",
        3600,
        "Seconds between runs of the job deleting request and operation logs past their retention",
        minimum=60,
        maximum=86400,
    ),
    _spec("log", "log_retention_days", 14, "Days app log files (<data dir>/logs) are kept", minimum=1),
)

SPECS_BY_KEY: dict[str, ConfigSpec] = {spec.key: spec for spec in CONFIG_SPECS}
CATEGORIES: tuple[str, ...] = tuple(dict.fromkeys(spec.category for spec in CONFIG_SPECS))


# Without a maximum of its own, a number is still kept where every use stays in range (seconds,
# minutes and days become TTLs and date arithmetic; 1e8 days is the edge of what dates can hold).
NUMBER_CEILING = 100_000_000

_TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}


def coerce(spec: ConfigSpec, raw: Any) -> ConfigValue:
    """Turn a JSON value or a shell string into the spec's type, or raise BadRequest."""
    value: ConfigValue
    try:
        if spec.type is bool:
            if isinstance(raw, bool):
                value = raw
            elif isinstance(raw, str) and raw.strip().lower() in {"true", "1", "yes", "on"}:
                value = True
            elif isinstance(raw, str) and raw.strip().lower() in {"false", "0", "no", "off"}:
                value = False
            elif isinstance(raw, int) and raw in (0, 1):
                value = bool(raw)
            else:
                raise ValueError
        elif spec.type is int:
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError
            value = int(raw)
        elif spec.type is float:
            if isinstance(raw, bool):
                raise ValueError
            value = float(raw)
        else:
            if not isinstance(raw, str | int | float) or isinstance(raw, bool):
                raise ValueError
            value = str(raw)
    except (TypeError, ValueError):
        raise BadRequest(f"config '{spec.key}' expects {_TYPE_NAMES[spec.type]} value") from None
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise BadRequest(f"config '{spec.key}' must be a finite number")
        if spec.minimum is not None and value < spec.minimum:
            raise BadRequest(f"config '{spec.key}' must be >= {spec.minimum:g}")
        ceiling = spec.maximum if spec.maximum is not None else NUMBER_CEILING
        if value > ceiling:
            raise BadRequest(f"config '{spec.key}' must be <= {ceiling:g}")
    if spec.choices and value not in spec.choices:
        raise BadRequest(f"config '{spec.key}' must be one of {', '.join(spec.choices)}")
    return value


def find_spec(key: str) -> ConfigSpec:
    spec = SPECS_BY_KEY.get(key)
    if spec is None:
        raise BadRequest(f"unknown config key '{key}'")
    return spec


class RuntimeConfigs:
    """The cached view of `system_configs` for one instance, and the poll that keeps every runtime
    cache of the instance in step with the database (`caches`, where the configs come first)."""

    def __init__(
        self, db: Database, *, poll_interval: float = 2.0, caches: RuntimeCaches | None = None
    ) -> None:
        self._db = db
        self._poll_interval = poll_interval
        self._values: dict[str, ConfigValue] = {s.key: s.default for s in CONFIG_SPECS}
        self._version = 0
        self._loaded_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self.instance_id = uuid.uuid4().hex[:12]
        self.caches = caches if caches is not None else RuntimeCaches()
        self.caches.register("configs", self.load)
        self._reload_version: int | None = None  # the reload version this process last caught up with
        self._reloaded_at = 0.0
        self._reload_failed: tuple[str, ...] = ()
        self._reloading = asyncio.Lock()  # the poll and a trigger take turns

    def get(self, key: str) -> Any:
        return self._values[key]

    def grouped(self) -> dict[str, dict[str, ConfigValue]]:
        out: dict[str, dict[str, ConfigValue]] = {c: {} for c in CATEGORIES}
        for spec in CONFIG_SPECS:
            out[spec.category][spec.key] = self._values[spec.key]
        return out

    def category(self, name: str) -> dict[str, ConfigValue]:
        if name not in CATEGORIES:
            raise BadRequest(f"unknown config category '{name}'")
        return self.grouped()[name]

    async def load(self) -> None:
        """Re-read every stored value from the database into the cache."""
        values: dict[str, ConfigValue] = {s.key: s.default for s in CONFIG_SPECS}
        version = reload_version = 0
        async with self._db.session() as session:
            rows = (await session.execute(select(SystemConfig.key, SystemConfig.value))).all()
        for key, stored in rows:
            if key == VERSION_KEY:
                version = int(stored)
                continue
            if key == RELOAD_KEY:
                reload_version = int(stored)
                continue
            spec = SPECS_BY_KEY.get(key)
            if spec is None:
                continue  # a key dropped by a newer release: ignore, keep the row
            try:
                values[key] = coerce(spec, json.loads(stored))
            except (BadRequest, ValueError):
                log.warning("ignoring invalid stored config %s", key)
        self._values = values
        self._version = version
        self._loaded_at = time.time()
        if self._reload_version is None:
            # The first load, at start-up: every other cache is built after it, so at least this new.
            # Later loads leave it: only a reload of every cache catches up with a reload version.
            self._reload_version = reload_version

    async def set(self, key: str, raw: Any, *, category: str | None = None) -> ConfigValue:
        spec = find_spec(key)
        if category and category != spec.category:
            raise BadRequest(f"config '{key}' belongs to category '{spec.category}'")
        value = coerce(spec, raw)
        async with self._db.transaction() as session:
            if value == spec.default:
                await session.execute(delete(SystemConfig).where(SystemConfig.key == key))
            else:
                row = await session.scalar(select(SystemConfig).where(SystemConfig.key == key))
                if row is None:
                    session.add(SystemConfig(category=spec.category, key=key, value=json.dumps(value)))
                else:
                    row.value = json.dumps(value)
                    row.category = spec.category
            await _bump_version(session, VERSION_KEY)
        await self.load()
        return value

    async def trigger_sync(self) -> tuple[int, ReloadReport]:
        """Make every worker of every instance reload every runtime cache; this one before returning.

        Both versions move in one transaction: the config version (what `sync/status` has always
        compared) and the reload version, which each poll answers with a reload of every cache. The
        caches that shared state can announce (the pool, the API keys) are announced too, so that
        instances on Redis do not even wait for their poll. Returns the new config version and what
        this process reloaded."""
        async with self._db.transaction() as session:
            await _bump_version(session, VERSION_KEY)
            reload_version = await _bump_version(session, RELOAD_KEY)
        await self.caches.announce()
        async with self._reloading:
            report = await self._reload_all(reload_version)
        return self._version, report

    async def stored_versions(self) -> tuple[int, int]:
        """(config version, reload version) as the database has them now."""
        async with self._db.session() as session:
            rows = await session.execute(
                select(SystemConfig.key, SystemConfig.value).where(
                    SystemConfig.key.in_((VERSION_KEY, RELOAD_KEY))
                )
            )
            stored = {key: value for key, value in rows}
        return int(stored.get(VERSION_KEY) or 0), int(stored.get(RELOAD_KEY) or 0)

    async def sync_status(self) -> dict[str, Any]:
        shared, shared_reload = await self.stored_versions()
        local_reload = self._reload_version or 0
        return {
            "instance_id": self.instance_id,
            "local_version": self._version,
            "shared_version": shared,
            "in_sync": shared == self._version and shared_reload == local_reload,
            "last_loaded_at": _stamp(self._loaded_at),
            "poll_interval_seconds": self._poll_interval,
            "local_reload_version": local_reload,
            "shared_reload_version": shared_reload,
            "last_reload_at": _stamp(self._reloaded_at),
            "reload_failed": list(self._reload_failed),
            "caches": list(self.caches.names),
        }

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._poll(), name="runtime-config-sync")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval)
            try:
                await self.catch_up()
            except Exception:  # keep polling through a transient database outage
                log.exception("runtime config sync failed")

    async def catch_up(self) -> None:
        """One poll: every cache reloaded after a trigger, the configs alone after a config change."""
        version, reload_version = await self.stored_versions()
        if reload_version != self._reload_version:
            async with self._reloading:
                if reload_version != self._reload_version:  # else a trigger here caught up meanwhile
                    await self._reload_all(reload_version)
        elif version != self._version:
            await self.load()

    async def _reload_all(self, reload_version: int) -> ReloadReport:
        """Every cache of this process, under `_reloading`; the version only counts as reached
        when all of them reloaded (else the next poll tries again)."""
        report = await self.caches.reload_all()
        self._reloaded_at = time.time()
        self._reload_failed = report.failed
        if not report.failed:
            self._reload_version = max(reload_version, self._reload_version or 0)
        return report


def _stamp(epoch: float) -> datetime | None:
    return datetime.fromtimestamp(epoch, UTC) if epoch else None


async def _bump_version(session: AsyncSession, key: str) -> int:
    """Add one to a version row (created at 1) in the caller's transaction; returns the new value."""
    row = await session.scalar(select(SystemConfig).where(SystemConfig.key == key).with_for_update())
    if row is None:
        session.add(SystemConfig(category="_meta", key=key, value="1"))
        return 1
    row.value = str(int(row.value) + 1)
    return int(row.value)
