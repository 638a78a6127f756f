"""A sync of every runtime cache: the registry reloads each in turn whatever the others do, and the
config poll of each process answers a new reload version with a reload of all of them (a new config
version with the configs alone) until every cache made it."""

from __future__ import annotations

import logging
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from aiproxy.runtime_caches import RuntimeCaches
from aiproxy.runtime_configs import RuntimeConfigs
from aiproxy.store.db import Database
from aiproxy.store.migrate import upgrade_to_head

SECRET = "sk-must-never-be-logged"


class Recorder:
    """Reloads and announces that note themselves, and fail on demand."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.failing: set[str] = set()

    def reload(self, name: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            self.calls.append(name)
            if name in self.failing:
                raise RuntimeError(f"cannot reach {SECRET}")

        return run


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("runtime-caches-template")
    path = directory / "aiproxy.db"
    upgrade_to_head(f"sqlite+aiosqlite:///{path}", directory)
    return path


@pytest.fixture
async def db(migrated: Path, tmp_path: Path) -> AsyncIterator[Database]:
    path = tmp_path / "aiproxy.db"
    shutil.copy(migrated, path)
    database = Database(f"sqlite+aiosqlite:///{path}")
    yield database
    await database.close()


async def test_every_cache_reloads_in_turn_and_a_failure_stops_none(caplog: pytest.LogCaptureFixture) -> None:
    calls = Recorder()
    caches = RuntimeCaches()
    for name in ("first", "broken", "last"):
        caches.register(name, calls.reload(name), announce=calls.reload(f"announce {name}"))
    calls.failing = {"broken", "announce first"}
    with caplog.at_level(logging.WARNING, logger="aiproxy.runtime_caches"):
        await caches.announce()
        report = await caches.reload_all()
    assert calls.calls == ["announce first", "announce broken", "announce last", "first", "broken", "last"]
    assert (report.reloaded, report.failed) == (("first", "last"), ("broken",))
    assert "cache broken could not be reloaded: RuntimeError" in caplog.text
    assert "cache first: reload not announced: RuntimeError" in caplog.text
    assert SECRET not in caplog.text
    assert caches.names == ("first", "broken", "last")
    with pytest.raises(ValueError):
        caches.register("first", calls.reload("first"))


async def test_a_trigger_reloads_every_cache_of_every_process(db: Database) -> None:
    calls = Recorder()
    workers = []
    for worker in ("a", "b"):  # two processes on one database, each with its own caches
        configs = RuntimeConfigs(db, caches=RuntimeCaches())
        configs.caches.register("pool", calls.reload(f"{worker} pool"))
        await configs.load()
        workers.append(configs)
    a, b = workers
    assert a.caches.names == ("configs", "pool")

    version, report = await a.trigger_sync()
    assert (report.reloaded, report.failed) == (("configs", "pool"), ())
    assert calls.calls == ["a pool"] and (await a.sync_status())["in_sync"] is True
    status = await b.sync_status()
    assert status["in_sync"] is False and status["shared_version"] == version
    await b.catch_up()
    assert calls.calls == ["a pool", "b pool"]
    status = await b.sync_status()
    assert status["in_sync"] is True and status["local_version"] == version
    assert status["local_reload_version"] == status["shared_reload_version"] == 1
    await a.catch_up()  # nothing new for the process that took the trigger
    assert calls.calls == ["a pool", "b pool"]

    # A config change reloads the configs alone, in the process that made it and in the others.
    await a.set("site_name", "Elsewhere")
    await b.catch_up()
    assert b.get("site_name") == "Elsewhere" and calls.calls == ["a pool", "b pool"]


async def test_a_cache_that_failed_to_reload_is_tried_again_at_the_next_poll(db: Database) -> None:
    calls = Recorder()
    a = RuntimeConfigs(db)
    b = RuntimeConfigs(db)
    b.caches.register("pool", calls.reload("pool"))
    await a.load()
    await b.load()
    await a.trigger_sync()
    calls.failing = {"pool"}
    await b.catch_up()
    status = await b.sync_status()
    assert status["in_sync"] is False and status["reload_failed"] == ["pool"]
    assert status["local_version"] == status["shared_version"]  # the configs themselves did reload
    calls.failing = set()
    await b.catch_up()
    status = await b.sync_status()
    assert status["in_sync"] is True and status["reload_failed"] == []
    assert calls.calls == ["pool", "pool"]
