"""A sync reloads every runtime cache on every instance and every worker.

Changes made straight in the database (what a restore, a migration or another tool does) are
announced to nobody: each process keeps serving its caches. The account pool and the price book
follow only the pool version, so they hold until something else moves it; the API key snapshots
reload by themselves after at most 5 s (`SNAPSHOT_TTL`), so for them the tests show the sync makes
the change hold at once, well inside that time. `POST /api/admin/configs/sync/trigger` on one
process reloads everything there before it answers, and on every other worker and instance at its
next look at the database (`AIPROXY_CONFIG_POLL_INTERVAL`, short here), or sooner through Redis.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.sql import Executable

from aiproxy.gateway.auth import REFRESH_AFTER
from aiproxy.store.db import Database
from aiproxy.store.models import Account, AIModel, ApiKey, RequestLog

from ..support import ADMIN_PASSWORD, Api, RelayServer, mock_upstream_process
from .conftest import Upstream
from .restarts import Backend, started_relay, two_instances

POLL = 0.4  # AIPROXY_CONFIG_POLL_INTERVAL of these relays
MODEL = "claude-opus-4-8"
BODY = {"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
SYNC = "/api/admin/configs/sync"
ALL_CACHES = ["configs", "oauth_tokens", "account_pool", "api_keys", "model_prices", "client_filter"]
PRICE_FACTOR = 100.0
FAVOURITE = {"priority": 1000, "weight": 1000}  # the spare is drawn once in about a million
SPARE = {"priority": 1, "weight": 1}


# -- the database, read and written behind the relays' backs -------------------------------------


async def _execute(url: str, statements: tuple[Executable, ...]) -> None:
    db = Database(url)
    try:
        async with db.transaction() as session:
            for statement in statements:
                await session.execute(statement)
    finally:
        await db.close()


def change_behind_the_relay(url: str, *statements: Executable) -> None:
    asyncio.run(_execute(url, statements))


@dataclass(frozen=True)
class Row:
    request_id: str
    key_id: int
    account_id: int | None
    status_code: int
    cost: float

    @property
    def worker(self) -> str:
        return self.request_id[:12]  # each gateway process prefixes its request ids with its own id


async def _rows(url: str, key_ids: list[int]) -> list[Row]:
    db = Database(url)
    try:
        async with db.session() as session:
            found = await session.execute(
                select(
                    RequestLog.request_id,
                    RequestLog.api_key_id,
                    RequestLog.account_id,
                    RequestLog.status_code,
                    RequestLog.cost,
                )
                .where(RequestLog.api_key_id.in_(key_ids))
                .order_by(RequestLog.id)
            )
            return [Row(*row) for row in found]
    finally:
        await db.close()


def rows_once_logged(url: str, sent: dict[int, int], *, timeout: float = 15.0) -> list[Row]:
    """Every row of the keys once each request sent so far has its own (exactly one, never more)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = asyncio.run(_rows(url, list(sent)))
        counts = {key_id: sum(1 for r in rows if r.key_id == key_id) for key_id in sent}
        if counts == sent:
            assert len({r.request_id for r in rows}) == len(rows)
            return rows
        assert all(counts[k] <= sent[k] for k in sent), (counts, sent)
        assert time.monotonic() < deadline, (counts, sent)
        time.sleep(0.1)


def price_rise() -> Executable:
    return (
        update(AIModel)
        .where(AIModel.model_id == MODEL)
        .values(
            input_price=AIModel.input_price * PRICE_FACTOR, output_price=AIModel.output_price * PRICE_FACTOR
        )
    )


# -- traffic -------------------------------------------------------------------------------------


@dataclass
class Traffic:
    """One user's keys on one account group; counts what each key sent."""

    admin: Api
    group_id: int
    keys: dict[str, tuple[str, int]]  # name -> (secret, id)
    sent: dict[int, int]
    counting: threading.Lock = field(default_factory=threading.Lock)  # a stream is sent from a thread

    @classmethod
    def create(cls, admin: Api, key_names: tuple[str, ...]) -> Traffic:
        user = admin.ok(
            "POST",
            "/api/admin/users",
            json={"username": f"u{uuid.uuid4().hex[:10]}", "password": "pass-12345"},
        )
        group = admin.ok("POST", "/api/admin/account-groups", json={"name": f"g-{uuid.uuid4().hex[:8]}"})
        keys = {}
        for name in key_names:
            key = admin.ok("POST", f"/api/admin/users/{user['id']}/api-keys", json={"name": name})
            admin.ok(
                "PUT",
                f"/api/admin/api-keys/{key['id']}",
                json={"account_group_id": group["id"], "rate_limit": 0},
            )
            keys[name] = (key["key"], key["id"])
        return cls(admin, group["id"], keys, {key_id: 0 for _, key_id in keys.values()})

    def add_account(self, upstream_url: str, **fields: Any) -> tuple[str, int]:
        credential = f"up-{uuid.uuid4().hex[:12]}"
        body = {
            "name": credential,
            "type": "claude-official",
            "api_key": credential,
            "base_url": upstream_url,
            "group_ids": [self.group_id],
            **fields,
        }
        return credential, self.admin.ok("POST", "/api/admin/accounts", json=body)["id"]

    def send(self, relay: RelayServer, name: str, *, stream: bool = False) -> httpx.Response:
        secret, key_id = self.keys[name]
        answer = httpx.post(
            f"{relay.base_url}/claude/v1/messages",
            json={**BODY, "stream": stream},
            headers={"x-api-key": secret},
            timeout=30,
        )
        with self.counting:
            self.sent[key_id] += 1
        return answer


def _admin_on(relay: RelayServer) -> Api:
    api = Api(relay.base_url)
    api.login("admin", ADMIN_PASSWORD)
    return api


def _until(check: Callable[[], bool], *, within: float, what: str) -> None:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < within, f"{what}: not within {within} s"
        time.sleep(0.05)


def _refused(answer: httpx.Response, status: int, message: str) -> bool:
    return answer.status_code == status and answer.json()["error"]["message"] == message


# -- two instances on PostgreSQL + Redis -----------------------------------------------------------


def test_a_sync_on_one_instance_makes_both_serve_what_the_database_says(
    backend: Backend, upstream: Upstream, tmp_path: Path
) -> None:
    env = {"AIPROXY_CONFIG_POLL_INTERVAL": str(POLL)}
    with two_instances(backend, tmp_path, env) as (first, second), mock_upstream_process() as other:
        second_upstream = Upstream(str(other.base_url).rstrip("/"), other)
        url = backend.database_url(tmp_path / "one")
        admin = _admin_on(first)
        traffic = Traffic.create(admin, ("main", "doomed", "limited"))
        credential, account_id = traffic.add_account(upstream.base_url)
        time.sleep(0.6)  # the instances look for pool changes every half second with Redis
        instances = (first, second)
        main_id = traffic.keys["main"][1]

        def moved(relay: RelayServer) -> bool:
            """One request of the main key, and whether the second upstream served it."""
            before = len(second_upstream.requests_for(credential))
            assert traffic.send(relay, "main").status_code == 200
            return len(second_upstream.requests_for(credential)) == before + 1

        try:
            for relay in instances:
                assert traffic.send(relay, "main").status_code == 200
            (old,) = {r.cost for r in rows_once_logged(url, traffic.sent) if r.key_id == main_id}
            assert old > 0

            # The account now points at another upstream, the model costs a hundred times more.
            change_behind_the_relay(
                url,
                update(Account).where(Account.id == account_id).values(base_url=second_upstream.base_url),
                price_rise(),
            )
            time.sleep(3 * POLL)  # several polls: they alone reload nothing
            assert not any(moved(relay) for relay in instances)

            # Keys, first used now (their snapshots are read now): one disabled, the other given a daily
            # limit below what it has served by the trigger. Until the snapshots age, both still pass.
            warmed = time.monotonic()
            for relay in instances:
                for name in ("doomed", "limited"):
                    assert traffic.send(relay, name).status_code == 200
            change_behind_the_relay(
                url,
                update(ApiKey).where(ApiKey.id == traffic.keys["doomed"][1]).values(status="disabled"),
                update(ApiKey).where(ApiKey.id == traffic.keys["limited"][1]).values(daily_limit=2),
            )
            for relay in instances:
                for name in ("doomed", "limited"):
                    assert traffic.send(relay, name).status_code == 200
            rows_once_logged(url, traffic.sent)  # the daily count starts from the logged requests: 4

            # A slow stream is under way on the first instance (still to the old upstream) while the
            # trigger reloads everything there; it ends whole, billed at the price it started with.
            upstream.behave(credential, "slow", delay_ms=300, count=1)
            streamed: list[httpx.Response] = []
            started = len(upstream.requests_for(credential)) + 1
            stream = threading.Thread(
                target=lambda: streamed.append(traffic.send(first, "main", stream=True))
            )
            stream.start()
            _until(lambda: len(upstream.requests_for(credential)) == started, within=10, what="the stream")
            answer = admin.ok("POST", f"{SYNC}/trigger")
            assert stream.is_alive()
            assert answer["reloaded"] == ALL_CACHES and answer["failed"] == []
            assert answer["in_sync"] is True
            assert answer["local_reload_version"] == answer["shared_reload_version"]

            # The instance that took the trigger: at once.
            assert moved(first)
            assert _refused(traffic.send(first, "doomed"), 401, "API Key 已被禁用")
            assert _refused(traffic.send(first, "limited"), 429, "已达到每日请求上限")

            # The other one: within its poll (Redis announces the pool and the keys even sooner).
            def second_obeys() -> bool:
                return (
                    moved(second)
                    and _refused(traffic.send(second, "doomed"), 401, "API Key 已被禁用")
                    and _refused(traffic.send(second, "limited"), 429, "已达到每日请求上限")
                )

            _until(second_obeys, within=POLL + 1.5, what="the second instance")
            assert time.monotonic() - warmed < REFRESH_AFTER, "the key snapshots could have aged out alone"
            assert moved(first) and moved(second)
            stream.join(timeout=30)
            assert streamed[0].status_code == 200 and "message_stop" in streamed[0].text

            # Every request, refusals included, is one request-log row; each instance billed the old
            # price until it reloaded, the new one from then on.
            _billed_old_then_new(rows_once_logged(url, traffic.sent), main_id, old, workers=2)

            second_admin = _admin_on(second)
            status = second_admin.ok("GET", f"{SYNC}/status")
            second_admin.close()
            assert status["instance_id"] != answer["instance_id"]
            assert status["in_sync"] is True and status["reload_failed"] == []
            assert status["local_reload_version"] == answer["shared_reload_version"]
        finally:
            admin.close()


def _billed_old_then_new(rows: list[Row], key_id: int, old: float, *, workers: int) -> None:
    """Per process, in the order it served them: the key's requests at the old price, then (once it
    reloaded) at the new one, its last one at the new price."""
    seen = {r.worker for r in rows if r.key_id == key_id}
    assert len(seen) == workers
    for worker in seen:
        served = sorted(
            (r for r in rows if r.key_id == key_id and r.worker == worker), key=lambda r: r.request_id
        )
        costs = [round(r.cost / old, 6) for r in served]
        first_new = costs.index(PRICE_FACTOR)
        assert costs == [1.0] * first_new + [PRICE_FACTOR] * (len(costs) - first_new), costs


# -- one host, two workers, no Redis -----------------------------------------------------------------


def _worker_statuses(relay: RelayServer, token: str, *, workers: int = 2) -> dict[str, dict[str, Any]]:
    """`sync/status` of each worker: asked on a new connection each time (the kernel hands each to
    either worker) until every worker answered."""
    seen: dict[str, dict[str, Any]] = {}
    for _ in range(200):
        answer = httpx.get(
            f"{relay.base_url}{SYNC}/status",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        status = answer.json()["data"]
        seen[status["instance_id"]] = status
        if len(seen) == workers:
            return seen
    raise AssertionError(f"only {len(seen)} of {workers} workers answered")


def _served_by_every_worker(relay: RelayServer, traffic: Traffic, url: str, *, workers: int = 2) -> list[Row]:
    """Requests of the main key, in rounds, until every worker served some: the rows of this call."""
    earlier = {r.request_id for r in rows_once_logged(url, traffic.sent)}
    for _ in range(20):
        for _ in range(4):
            assert traffic.send(relay, "main").status_code == 200
        rows = [r for r in rows_once_logged(url, traffic.sent) if r.request_id not in earlier]
        if len({r.worker for r in rows}) == workers:
            return rows
    raise AssertionError("a worker served none of the requests")


def test_a_sync_reaches_every_worker_of_a_host_without_redis(upstream: Upstream, tmp_path: Path) -> None:
    """SQLite and in-process shared state: a version bumped in memory reaches one worker only. The
    accounts made through the API reach only the worker that made them, so the first sync (after the
    set-up) already shows the trigger reaching both; the second one, after the database changed."""
    env = {
        "AIPROXY_WORKERS": "2",
        "AIPROXY_CONFIG_POLL_INTERVAL": str(POLL),
        # Given here: two workers starting on an empty data dir would each generate their own.
        "AIPROXY_SECRET_KEY": uuid.uuid4().hex * 2,
        "AIPROXY_JWT_SECRET": uuid.uuid4().hex * 2,
    }
    relay = started_relay(tmp_path, env)
    url = f"sqlite+aiosqlite:///{tmp_path}/aiproxy.db"
    admin = _admin_on(relay)
    try:
        assert admin.token
        traffic = Traffic.create(admin, ("main",))
        favourite = traffic.add_account(upstream.base_url, **FAVOURITE)[1]
        spare = traffic.add_account(upstream.base_url, **SPARE)[1]

        def every_worker_reached(version: int) -> Callable[[], bool]:
            def check() -> bool:
                statuses = _worker_statuses(relay, str(admin.token)).values()
                return all(s["local_reload_version"] == version and s["in_sync"] for s in statuses)

            return check

        answer = admin.ok("POST", f"{SYNC}/trigger")
        assert answer["reloaded"] == ALL_CACHES and answer["failed"] == []
        _until(every_worker_reached(answer["shared_reload_version"]), within=POLL + 3, what="set-up sync")
        before = _served_by_every_worker(relay, traffic, url)
        assert {r.account_id for r in before} == {favourite}
        (old,) = {r.cost for r in before}

        change_behind_the_relay(
            url, update(Account).where(Account.id == favourite).values(enabled=False), price_rise()
        )
        time.sleep(3 * POLL)  # several polls: they alone reload nothing
        stale = _served_by_every_worker(relay, traffic, url)
        assert {(r.account_id, r.cost) for r in stale} == {(favourite, old)}

        answer = admin.ok("POST", f"{SYNC}/trigger")
        assert answer["reloaded"] == ALL_CACHES and answer["failed"] == []
        _until(every_worker_reached(answer["shared_reload_version"]), within=POLL + 3, what="sync")
        after = _served_by_every_worker(relay, traffic, url)
        assert {r.account_id for r in after} == {spare}
        assert {round(r.cost / old, 6) for r in after} == {PRICE_FACTOR}
        statuses = _worker_statuses(relay, str(admin.token))
        assert all(s["reload_failed"] == [] and s["caches"] == ALL_CACHES for s in statuses.values())
    finally:
        admin.close()
        relay.stop()
