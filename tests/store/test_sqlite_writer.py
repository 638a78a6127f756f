"""The SQLite writer: a batch of statements is one transaction, run off the event loop, and waits its
turn for the write lock like any other connection."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from aiproxy.store.db import Database, sqlite_file
from aiproxy.store.sqlite_writer import SqliteWriter

INSERT = "INSERT INTO t (x) VALUES (?)"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    file = tmp_path / "w.db"
    with sqlite3.connect(file) as connection:
        connection.execute("PRAGMA journal_mode=WAL")  # as the relay's database always is (db.py)
        connection.execute("CREATE TABLE t (x INTEGER UNIQUE)")
    return file


def _values(path: Path) -> list[int]:
    with sqlite3.connect(path) as connection:
        return [x for (x,) in connection.execute("SELECT x FROM t ORDER BY x")]


def test_only_a_sqlite_file_has_a_writer() -> None:
    assert sqlite_file("sqlite+aiosqlite:////data/aiproxy.db") == "/data/aiproxy.db"
    assert sqlite_file("sqlite+aiosqlite:///aiproxy.db") == "aiproxy.db"
    assert sqlite_file("sqlite+aiosqlite://") is None
    assert sqlite_file("sqlite+aiosqlite:///:memory:") is None
    assert sqlite_file("sqlite+aiosqlite:///file.db?mode=ro") is None  # options: left to the engine
    assert Database("postgresql+asyncpg://u@127.0.0.1/db").sqlite_writer() is None


async def test_a_failed_statement_leaves_nothing_of_its_batch(path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{path}")
    writer = database.sqlite_writer()
    assert writer is not None
    try:
        with pytest.raises(sqlite3.IntegrityError):
            await writer.run([(INSERT, [(1,), (2,)]), (INSERT, [(3,), (2,)])])  # 2 twice
        assert _values(path) == []
        await writer.run([(INSERT, [(1,), (2,)]), (INSERT, [(3,)])])  # the writer goes on
        assert _values(path) == [1, 2, 3]
    finally:
        await database.close()


async def test_the_batch_waits_for_the_write_lock_without_holding_the_loop(path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{path}")
    writer = database.sqlite_writer()
    assert writer is not None
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        other.execute(INSERT, (10,))
        pending = asyncio.ensure_future(writer.run([(INSERT, [(1,)])]))
        ticks = 0
        for _ in range(20):  # the event loop keeps running while the writer waits
            await asyncio.sleep(0.01)
            ticks += 1
        assert not pending.done() and ticks == 20
        other.execute("COMMIT")
        await asyncio.wait_for(pending, 10)
        assert _values(path) == [1, 10]
    finally:
        other.close()
        await database.close()


async def test_the_batch_runs_on_the_writers_connection_in_its_thread(path: Path) -> None:
    threads: list[str] = []

    def tune(connection: sqlite3.Connection, _record: object) -> None:
        def where() -> int:
            threads.append(threading.current_thread().name)
            return len(threads)

        connection.create_function("where_am_i", 0, where)

    writer = SqliteWriter(str(path), tune)
    try:
        await writer.run([("INSERT INTO t (x) VALUES (where_am_i())", [(), ()])])
    finally:
        await writer.close()
    assert _values(path) == [1, 2]
    assert len(threads) == 2 and all(name.startswith("aiproxy-sqlite-writer") for name in threads)
