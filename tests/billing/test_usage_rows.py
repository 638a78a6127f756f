"""The recorder's driver-level inserts store exactly what SQLAlchemy's own insert stores.

The bulk insert (usage_rows.py) hands plain tuples to the driver, bypassing SQLAlchemy's bind
processing; these tests write the same events both ways into one database, on SQLite and on
PostgreSQL, and compare the stored values as the driver reads them back (timestamps as SQLite
text included: range queries compare that text).
"""

from __future__ import annotations

import dataclasses
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from aiproxy.billing.pricing import Cost, Usage
from aiproxy.billing.recorder import FLUSH_SIZE, FLUSH_SIZE_SERVER, UsageRecorder
from aiproxy.billing.usage_event import LOG_COLUMNS, USAGE_COLUMNS, UsageEvent
from aiproxy.billing.usage_rows import _ROWS_PER_CALL, write_batch
from aiproxy.store.db import Database
from aiproxy.store.migrate import upgrade_to_head
from aiproxy.store.models import Account, ApiKey, DailyUsage, RequestLog, UsageRecord, UserPackage

from ..support import create_pg_database, drop_pg_database
from .test_journal import new_key


def test_the_tuples_name_every_column_once() -> None:
    for columns, table in ((LOG_COLUMNS, RequestLog), (USAGE_COLUMNS, UsageRecord)):
        assert len(set(columns)) == len(columns)
        assert set(columns) == {column.name for column in table.__table__.columns} - {"id"}


@pytest.fixture(scope="module")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url, name = create_pg_database()
    upgrade_to_head(url, tmp_path_factory.mktemp("pg-rows"))
    try:
        yield url
    finally:
        drop_pg_database(name)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, migrated: Path, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    path = tmp_path / "aiproxy.db"
    shutil.copy(migrated, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    try:
        yield database
    finally:
        await database.close()


def _events(tag: str, key_id: int = 9) -> list[UsageEvent]:
    usage = Usage(1200, 345, 20, 7)
    cost = Cost(
        input=0.0036, output=0.005175, cache_creation=0.000075, cache_read=0.0000021, rate=1.5, total=0.0133
    )
    served = UsageEvent(
        request_id=f"{tag}-served",
        user_id=3,
        api_key_id=key_id,
        account_id=4,
        platform="claude-official",
        model="claude-sonnet-4-5",
        upstream_model="claude-sonnet-4-5-20250929",
        path="/claude/v1/messages",
        stream=True,
        status="success",
        status_code=200,
        usage=usage,
        cost=cost,
        duration_ms=812,
        first_byte_ms=95,
        created_at=datetime(2026, 11, 30, 23, 59, 59, 999_999, tzinfo=UTC),
        retries=1,
        client_ip="10.0.0.8",
        user_agent="claude-cli/2.1 (external, cli)\x00tail",
        session_hash="ab" * 32,
        flags=["truncated", "unknown_model"],
        request_headers='{"x-api-key": "***"}',
        request_body='{"model": "claude-sonnet-4-5"}',
        user_package_id=12,
        client_type="claude_code",
    )
    refused = UsageEvent(
        request_id=f"{tag}-refused",
        user_id=None,
        api_key_id=None,
        account_id=None,
        platform="",
        model="m" * 300,
        upstream_model="",
        path="/v1/" + "p" * 400,
        stream=False,
        status="error",
        status_code=401,
        usage=None,
        cost=None,
        duration_ms=0,
        first_byte_ms=0,
        created_at=datetime(2026, 11, 30, 8, 0, 0),  # naive: taken as UTC
        error_message="invalid api key",
    )
    elsewhere = dataclasses.replace(
        served,
        request_id=f"{tag}-elsewhere",
        created_at=datetime(2026, 12, 1, 7, 30, tzinfo=timezone(timedelta(hours=8))),  # 23:30 UTC
        stream=False,
        user_package_id=None,
    )
    return [served, refused, elsewhere]


async def _stored(database: Database, table: str, columns: tuple[str, ...], tag: str) -> list[tuple]:
    """Rows as the driver returns them (no SQLAlchemy result processing), request ids untagged."""
    async with database.session() as session:
        connection = await session.connection()
        result = await connection.exec_driver_sql(
            f"SELECT {', '.join(columns)} FROM {table} WHERE request_id LIKE '{tag}-%' ORDER BY id"
        )
        rows = [tuple(row) for row in result.all()]
    at = columns.index("request_id")
    return [(*row[:at], row[at].split("-", 1)[1], *row[at + 1 :]) for row in rows]


async def test_bulk_rows_equal_what_sqlalchemy_stores(database: Database) -> None:
    async with database.transaction() as session:
        await write_batch(session, _events("bulk"))
    orm = _events("orm")
    async with database.transaction() as session:  # what the recorder did before: Core insert
        await session.execute(
            insert(RequestLog.__table__),
            [dict(zip(LOG_COLUMNS, e.log_values(e.created_at), strict=True)) for e in orm],
        )
        rows = [e.usage_values(e.created_at) for e in orm]
        await session.execute(
            insert(UsageRecord.__table__),
            [dict(zip(USAGE_COLUMNS, row, strict=True)) for row in rows if row is not None],
        )
    for table, columns in (("request_logs", LOG_COLUMNS), ("usage_records", USAGE_COLUMNS)):
        bulk = await _stored(database, table, columns, "bulk")
        assert bulk == await _stored(database, table, columns, "orm")
        assert len(bulk) == (3 if table == "request_logs" else 2)
    async with database.session() as session:  # and the ORM reads them back as they were
        logs = {row.request_id: row for row in await session.scalars(select(RequestLog))}
    assert logs["bulk-served"].created_at == datetime(2026, 11, 30, 23, 59, 59, 999_999, tzinfo=UTC)
    assert logs["bulk-refused"].created_at == datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    assert logs["bulk-elsewhere"].created_at == datetime(2026, 11, 30, 23, 30, tzinfo=UTC)
    assert logs["bulk-served"].user_agent == "claude-cli/2.1 (external, cli)\ufffdtail"
    assert len(logs["bulk-refused"].model) == 128 and len(logs["bulk-refused"].path) == 255
    assert logs["bulk-served"].flags == "truncated,unknown_model" and logs["bulk-served"].stream is True


async def test_the_daily_roll_up_adds_up_per_day_key_and_model(database: Database) -> None:
    async with database.transaction() as session:
        await write_batch(session, _events("one", key_id=77))
    async with database.transaction() as session:
        await write_batch(session, _events("two", key_id=77))
    async with database.session() as session:  # both billed events of each batch: 30 Nov UTC
        (daily,) = (await session.scalars(select(DailyUsage).where(DailyUsage.api_key_id == 77))).all()
    assert (daily.day.isoformat(), daily.user_id, daily.api_key_id, daily.model) == (
        "2026-11-30",
        3,
        77,
        "claude-sonnet-4-5",
    )
    assert daily.request_count == 4 and daily.total_tokens == 4 * 1572
    assert daily.cost == pytest.approx(4 * 0.0133)


async def test_key_and_account_counters_add_up_over_batches(database: Database) -> None:
    """A key counts what it was served, an account every request it was given; both keep the
    newest request's time, read back through the ORM as aware UTC datetimes."""
    _, key_id = await new_key(database)
    async with database.transaction() as session:
        account = Account(name="a", type="claude-official")
        session.add(account)
        await session.flush()
        account_id = account.id
    tag = uuid.uuid4().hex[:6]
    first = [dataclasses.replace(e, account_id=account_id) for e in _events(f"{tag}a", key_id=key_id)]
    second = [dataclasses.replace(e, account_id=account_id) for e in _events(f"{tag}b", key_id=key_id)]
    for batch in (first, second):
        async with database.transaction() as session:
            await write_batch(session, batch)
    async with database.session() as session:
        key = await session.get_one(ApiKey, key_id)
        account = await session.get_one(Account, account_id)
    # Per batch of _events: "served" and "elsewhere" are billed (1572 tokens, $0.0133 each) on the key;
    # the refused one has no key; all three name the account.
    assert (key.request_count, key.used_tokens) == (4, 4 * 1572)
    assert key.used_cost == pytest.approx(4 * 0.0133)
    assert (account.request_count, account.used_tokens) == (6, 4 * 1572)
    assert account.used_cost == pytest.approx(4 * 0.0133)
    newest = datetime(2026, 11, 30, 23, 59, 59, 999_999, tzinfo=UTC)
    assert key.last_used_at == newest and account.last_used_at == newest


async def test_packages_pay_and_a_used_up_one_is_exhausted(database: Database) -> None:
    """A package gets what its billed requests cost; one whose token quota that reaches becomes
    `exhausted`, one with room left stays active; both are stamped as updated."""
    user_id, key_id = await new_key(database)
    started = datetime(2026, 11, 1, tzinfo=UTC)
    async with database.transaction() as session:
        tight = UserPackage(
            user_id=user_id, token_quota=3000, start_time=started, end_time=started + timedelta(days=60)
        )
        roomy = UserPackage(
            user_id=user_id, token_quota=10**9, start_time=started, end_time=started + timedelta(days=60)
        )
        session.add_all([tight, roomy])
        await session.flush()
        tight_id, roomy_id = tight.id, roomy.id
    before = datetime.now(UTC)
    tag = uuid.uuid4().hex[:6]
    served, refused, elsewhere = _events(tag, key_id=key_id)
    batch = [
        dataclasses.replace(served, user_package_id=tight_id),  # 1572 tokens
        refused,  # not billed: pays nothing
        dataclasses.replace(elsewhere, user_package_id=tight_id),  # 1572 more: 3144 >= 3000
        dataclasses.replace(served, request_id=f"{tag}-roomy", user_package_id=roomy_id),
    ]
    async with database.transaction() as session:
        await write_batch(session, batch)
    async with database.session() as session:
        tight = await session.get_one(UserPackage, tight_id)
        roomy = await session.get_one(UserPackage, roomy_id)
    assert (tight.used_tokens, tight.status) == (2 * 1572, "exhausted")
    assert tight.used_cost == pytest.approx(2 * 0.0133)
    assert (roomy.used_tokens, roomy.status) == (1572, "active")
    assert roomy.used_cost == pytest.approx(0.0133)
    assert tight.updated_at >= before - timedelta(seconds=1) and roomy.updated_at >= before - timedelta(
        seconds=1
    )


async def test_a_batch_larger_than_one_driver_call_is_written_whole(database: Database) -> None:
    """Rows go to the driver a few hundred at a time; every one of them arrives, the roll-up and
    the counters add up over all of them, and the recorder takes a server's batches larger."""
    _, key_id = await new_key(database)
    tag = uuid.uuid4().hex[:6]
    served = _events(tag, key_id=key_id)[0]
    total = 2 * _ROWS_PER_CALL + 57
    batch = [
        dataclasses.replace(served, request_id=f"{tag}-{n}", user_package_id=None, account_id=None)
        for n in range(total)
    ]
    async with database.transaction() as session:
        await write_batch(session, batch)
    assert len(await _stored(database, "request_logs", ("request_id",), tag)) == total
    assert len(await _stored(database, "usage_records", ("request_id",), tag)) == total
    async with database.session() as session:
        key = await session.get_one(ApiKey, key_id)
        daily = (
            await session.execute(select(DailyUsage.request_count).where(DailyUsage.api_key_id == key_id))
        ).scalar_one()
    assert (key.request_count, key.used_tokens, daily) == (total, total * 1572, total)

    recorder = UsageRecorder(database)
    for n in range(FLUSH_SIZE_SERVER + 10):
        recorder.record(dataclasses.replace(batch[0], request_id=f"{tag}-r{n}"))
    assert await recorder.flush()
    # SQLite commits in the relay's own process: small transactions; a server takes larger ones.
    assert recorder.written == (FLUSH_SIZE if database.is_sqlite else FLUSH_SIZE_SERVER)
