"""Bulk writes to a SQLite file in one hop: a thread of its own with its own connection.

Through SQLAlchemy's async engine each statement of a write crosses from the event loop to
aiosqlite's thread and back about three times (a cursor made, run, closed), and the session's
begin, commit and reset add more: ~20 crossings for one batch of usage rows, each a wake-up of the
event loop. Here the whole transaction (every statement, then the commit) runs in the writer's
thread in one go, and the event loop is woken once, when it is done.

WAL keeps readers going meanwhile; writers (this one and the engine's connections) take turns under
SQLite's write lock, waiting up to `busy_timeout` for it like any other connection.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

# (statement, parameter sets): one `executemany` each
Statements = Sequence[tuple[str, Sequence[Sequence[Any]]]]


class SqliteWriter:
    """Runs a list of statements as one transaction on `path`, off the event loop."""

    def __init__(self, path: str, tune: Any) -> None:
        self._path = path
        self._tune = tune  # the engine's connection set-up (WAL, synchronous, busy_timeout, ...)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aiproxy-sqlite-writer")
        self._connection: sqlite3.Connection | None = None  # opened in the thread, on first use

    async def run(self, statements: Statements) -> None:
        """Every statement, then the commit; nothing of them stays when one fails (raised here)."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self._transaction, statements)

    def _transaction(self, statements: Statements) -> None:
        connection = self._connection
        if connection is None:
            connection = sqlite3.connect(self._path, timeout=30, isolation_level=None)
            try:
                self._tune(connection, None)
            except BaseException:
                connection.close()
                raise
            self._connection = connection
        # IMMEDIATE: the write lock is taken (or waited for) at the start, never upgraded midway.
        connection.execute("BEGIN IMMEDIATE")
        try:
            for statement, rows in statements:
                connection.executemany(statement, rows)
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=True)

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
