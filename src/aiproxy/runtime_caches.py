"""Every cache of database rows one process keeps, and how to reload them all at once.

Each owner registers its cache here under a name: how this process reloads it from the database
and, when other instances can be told through shared state, how to tell them. `POST
/api/admin/configs/sync/trigger` announces and reloads every cache, and each other worker and
instance reloads them all when its runtime-config poll sees the reload version move (see
runtime_configs.py): after a change made straight in the database (a restore, a migration, another
tool) nothing keeps serving what the database no longer says.

A reload replaces a cache whole (requests under way keep the objects they already hold) or empties
it (the next request reads the database). One cache failing to reload is logged and reported; the
others still reload.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

Reload = Callable[[], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class ReloadReport:
    reloaded: tuple[str, ...]
    failed: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Cache:
    name: str
    reload: Reload
    announce: Reload | None


@dataclass(slots=True)
class RuntimeCaches:
    """The registry: caches in the order they were registered (configs first, see app.py)."""

    _caches: list[_Cache] = field(default_factory=list)

    def register(self, name: str, reload: Reload, *, announce: Reload | None = None) -> None:
        """`reload` refreshes this process's copy; `announce`, when given, tells the other instances
        through shared state (faster than their poll, and only there when shared state is Redis)."""
        if any(cache.name == name for cache in self._caches):
            raise ValueError(f"cache '{name}' is registered twice")
        self._caches.append(_Cache(name, reload, announce))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(cache.name for cache in self._caches)

    async def announce(self) -> None:
        """Tell the other instances to reload what shared state can tell them; best effort (the
        database version reaches them anyway, at their next poll)."""
        for cache in self._caches:
            if cache.announce is None:
                continue
            try:
                await cache.announce()
            except Exception as exc:
                # The class only: a driver's message can quote connection details.
                log.warning("cache %s: reload not announced: %s", cache.name, type(exc).__name__)

    async def reload_all(self) -> ReloadReport:
        """Reload every cache of this process, one after the other; a failure stops none of the others."""
        reloaded: list[str] = []
        failed: list[str] = []
        for cache in self._caches:
            try:
                await cache.reload()
            except Exception as exc:
                log.warning("cache %s could not be reloaded: %s", cache.name, type(exc).__name__)
                failed.append(cache.name)
            else:
                reloaded.append(cache.name)
        return ReloadReport(tuple(reloaded), tuple(failed))
