"""The configured database as the monitor's `database` view (alias `mysql`) shows it.

The view must stay cheap on tables of millions of rows, so nothing here counts a big table:

- SQLite: sizes from the page counts (`PRAGMA page_count`, `freelist_count`) and the file sizes
  of the database and its WAL. A table's rows are estimated from its rowid range (one index
  probe at each end: an upper bound, exact while nothing was deleted from the middle); only
  tables whose estimate is below `EXACT_BELOW` are counted. SQLite keeps no per-table sizes
  short of walking every page (the `dbstat` table: seconds on a large file), so tables carry
  rows only and `index_size` is null.
- PostgreSQL: sizes of each table, its indexes and the database from the catalog functions
  (they stat the relation files); rows from the statistics (`pg_class.reltuples` scaled to the
  table's current size, else `n_live_tup`), counted exactly only below `EXACT_BELOW`;
  connections from `pg_stat_activity`.

Every table says whether its `rows` is `estimated`. A database that does not answer makes the
view say `connected: false` with the reason, instead of failing.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ..store.db import Database

log = logging.getLogger(__name__)

EXACT_BELOW = 50_000  # rows: a table estimated below this is counted exactly (a few ms at most)
TIMEOUT = 5.0  # seconds the whole view may take before the database counts as not answering


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(name: str) -> str:
    return "'" + name.replace("'", "''") + "'"


def _union(parts: list[str]) -> str:
    return " UNION ALL ".join(parts)


async def _exact_counts(conn: AsyncConnection, tables: list[str]) -> dict[str, int]:
    """count(*) of each table, in one statement."""
    if not tables:
        return {}
    sql = _union([f"SELECT {_literal(t)} AS name, (SELECT count(*) FROM {_quote(t)}) AS n" for t in tables])
    return {name: int(n or 0) for name, n in (await conn.execute(text(sql))).tuples()}


def _pool_view(db: Database) -> dict[str, Any] | None:
    """This instance's connection pool (a queue pool on both backends)."""
    pool: Any = db.engine.pool
    if not all(hasattr(pool, name) for name in ("size", "checkedin", "checkedout")):
        return None
    return {"size": pool.size(), "idle": pool.checkedin(), "in_use": pool.checkedout()}


# -- SQLite -------------------------------------------------------------------------------------


def _file_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


_SQLITE_TABLES = (
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
)


async def _sqlite_stats(conn: AsyncConnection, path: str) -> dict[str, Any]:
    async def pragma(name: str) -> Any:
        return (await conn.execute(text(f"PRAGMA {name}"))).scalar()

    page_size, page_count, free_pages = [
        int(await pragma(n) or 0) for n in ("page_size", "page_count", "freelist_count")
    ]
    journal_mode = str(await pragma("journal_mode"))
    version = (await conn.execute(text("SELECT sqlite_version()"))).scalar()
    names = list((await conn.execute(text(_SQLITE_TABLES))).scalars())
    # max(rowid) and min(rowid) as two scalar subqueries: each is one probe of the rowid b-tree
    # (in one expression SQLite would scan the table instead).
    spans = [
        f"SELECT {_literal(n)}, (SELECT max(rowid) FROM {t}) - (SELECT min(rowid) FROM {t}) + 1"
        for n, t in ((n, _quote(n)) for n in names)
    ]
    ranges = await conn.execute(text(_union(spans)))
    estimates = {name: int(span or 0) for name, span in ranges.tuples()}
    exact = await _exact_counts(conn, [n for n in names if estimates[n] < EXACT_BELOW])
    tables = [{"name": n, "rows": exact.get(n, estimates[n]), "estimated": n not in exact} for n in names]
    file_size, wal_size = _file_size(path), _file_size(path + "-wal")
    return {
        "kind": "sqlite",
        "version": str(version),
        "path": path,
        "table_count": len(names),
        # In use: table and index pages together (SQLite does not tell them apart cheaply).
        "data_size": (page_count - free_pages) * page_size,
        "index_size": None,
        "free_size": free_pages * page_size,
        "total_size": file_size + wal_size,
        "file_size": file_size,
        "wal_size": wal_size,
        "page_size": page_size,
        "page_count": page_count,
        "freelist_count": free_pages,
        "journal_mode": journal_mode,
        "tables": tables,
    }


# -- PostgreSQL ---------------------------------------------------------------------------------

_PG_DATABASE = (
    "SELECT current_database(), pg_database_size(current_database()), current_setting('server_version')"
)
# The planner's row estimate scaled by how much the table's main file grew since it was made,
# as the planner itself does; pages = the main fork's size in blocks.
_PG_TABLES = """
SELECT c.relname, c.reltuples, c.relpages,
       pg_relation_size(c.oid) / current_setting('block_size')::int, s.n_live_tup,
       pg_table_size(c.oid), pg_indexes_size(c.oid), pg_total_relation_size(c.oid)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
WHERE c.relkind IN ('r', 'p') AND n.nspname = current_schema()
ORDER BY c.relname
"""


def _pg_estimate(reltuples: float, relpages: int, pages: int, live: int | None) -> int | None:
    """Rows by the statistics: the last ANALYZE or VACUUM's count (autovacuum keeps it within
    about 10% on a growing table) scaled to the table's size now; before the first one
    (`reltuples` -1), the live rows the statistics collector counted; None when neither knows."""
    if reltuples >= 0:
        return int(reltuples * pages / relpages) if relpages > 0 else int(reltuples)
    return int(live) if live else None


async def _pg_connections(conn: AsyncConnection) -> dict[str, Any]:
    by_state = {
        str(state or "unknown"): int(n)
        for state, n in (
            await conn.execute(
                text(
                    "SELECT state, count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() GROUP BY state"
                )
            )
        ).tuples()
    }
    limit = (await conn.execute(text("SHOW max_connections"))).scalar()
    return {"total": sum(by_state.values()), "by_state": by_state, "max_connections": int(limit or 0)}


async def _pg_stats(conn: AsyncConnection) -> dict[str, Any]:
    name, size, version = (await conn.execute(text(_PG_DATABASE))).one()
    rows = (await conn.execute(text(_PG_TABLES))).all()
    estimates = {r[0]: _pg_estimate(float(r[1]), int(r[2]), int(r[3]), r[4]) for r in rows}
    exact = await _exact_counts(conn, [n for n, e in estimates.items() if e is None or e < EXACT_BELOW])
    tables = [
        {
            "name": r[0],
            "rows": exact.get(r[0], estimates[r[0]]),
            "estimated": r[0] not in exact,
            "data_size": int(r[5]),
            "index_size": int(r[6]),
            "total_size": int(r[7]),
        }
        for r in rows
    ]
    return {
        "kind": "postgresql",
        "version": str(version),
        "database": str(name),
        "table_count": len(tables),
        "data_size": sum(t["data_size"] for t in tables),
        "index_size": sum(t["index_size"] for t in tables),
        "total_size": int(size),
        "connections": await _pg_connections(conn),
        "tables": tables,
    }


async def database_stats(*, db: Database) -> dict[str, Any]:
    """Sizes, tables and connections of the configured database; `connected: false` when it does
    not answer (within `TIMEOUT`)."""
    try:
        async with asyncio.timeout(TIMEOUT), db.engine.connect() as conn:
            if db.is_sqlite:
                data = await _sqlite_stats(conn, str(db.engine.url.database or ""))
            else:
                data = await _pg_stats(conn)
    except Exception as exc:  # whatever failed, the view's answer is "not connected" and why
        log.warning("monitor: the database did not answer: %s: %s", type(exc).__name__, exc)
        return {
            "kind": "sqlite" if db.is_sqlite else "postgresql",
            "connected": False,
            "error": type(exc).__name__,
            "pool": _pool_view(db),
        }
    return {**data, "connected": True, "pool": _pool_view(db)}
