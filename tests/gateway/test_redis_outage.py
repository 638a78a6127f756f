"""Redis down or stalled under a scale-out relay (PostgreSQL + Redis).

Requests that need no limit keep being served from the last snapshots; requests whose limit
can only be checked in Redis are refused with 503 in the client's own error shape (and logged);
nothing waits on a stalled Redis for longer than about its timeout; /ready says what is down
while /health stays the plain liveness answer. The relay here uses a private `redis-server`
(tests/redis_server.py), the only Redis these tests ever stop or freeze.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from ..redis_server import RedisServer
from ..support import ADMIN_PASSWORD, Api, RelayServer, create_pg_database, drop_pg_database
from .conftest import Pool, Upstream

STATE_UNAVAILABLE = "共享状态不可用，无法校验限额，请稍后重试"
CLAUDE_BODY = {"model": "claude-opus-4-8", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
OPENAI_BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
STALL_BUDGET = 2.0  # seconds a request may take while Redis is frozen (its timeout is 0.5 s)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("private-redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def outage_relay(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RelayServer]:
    url, pg_name = create_pg_database()
    relay = RelayServer(
        data_dir=tmp_path_factory.mktemp("outage-relay"),
        env_overrides={
            "AIPROXY_DATABASE_URL": url,
            "AIPROXY_REDIS_URL": redis_server.url,
            "AIPROXY_REDIS_PREFIX": f"aiproxy-test:{uuid.uuid4().hex[:8]}:",
        },
    )
    try:
        relay.set_configs({"captcha_enabled": "false", "login_rate_limit_max": "1000"})
        relay.start()
        yield relay
    finally:
        relay.stop()
        drop_pg_database(pg_name)


@pytest.fixture
def pool(outage_relay: RelayServer, redis_server: RedisServer, upstream: Upstream) -> Iterator[Pool]:
    """Two Claude accounts and an OpenAI one without caps, and a user without a concurrency cap
    whose key has no limits: a request of this key needs nothing from Redis."""
    if redis_server.process is None:  # a failed test may have left it down
        redis_server.start()
    assert _ready(outage_relay.base_url, within=5).status_code == 200
    admin = Api(outage_relay.base_url)
    admin.login("admin", ADMIN_PASSWORD)
    group = admin.ok("POST", "/api/admin/account-groups", json={"name": f"g-{uuid.uuid4().hex[:10]}"})
    username = f"u{uuid.uuid4().hex[:10]}"
    user_id = admin.ok(
        "POST",
        "/api/admin/users",
        json={"username": username, "password": "secret-pass", "max_concurrency": 0},
    )["id"]
    user = Api(outage_relay.base_url)
    user.login(username, "secret-pass")
    created = user.ok("POST", "/api/api-keys", json={"name": "main"})
    admin.ok(
        "PUT", f"/api/admin/api-keys/{created['id']}", json={"account_group_id": group["id"], "rate_limit": 0}
    )
    pool = Pool(admin, outage_relay, upstream, group["id"], user, user_id, created["key"], created["id"])
    pool.add_account()
    pool.add_account()
    pool.add_account("openai")
    yield pool
    admin.close()
    user.close()


def _ready(base_url: str, *, within: float) -> httpx.Response:
    """GET /ready until it answers 200 or `within` seconds pass; the last answer."""
    deadline = time.monotonic() + within
    while True:
        response = httpx.get(f"{base_url}/ready", timeout=10)
        if response.status_code == 200 or time.monotonic() >= deadline:
            return response
        time.sleep(0.1)


def claude(pool: Pool, key: str, *, stream: bool = False, session: str | None = None) -> httpx.Response:
    headers = {"x-api-key": key}
    if session:
        headers["x-session-id"] = session
    return httpx.post(
        f"{pool.relay.base_url}/claude/v1/messages",
        json={**CLAUDE_BODY, "stream": stream},
        headers=headers,
        timeout=10,
    )


def openai_chat(pool: Pool, key: str) -> httpx.Response:
    return httpx.post(
        f"{pool.relay.base_url}/openai/v1/chat/completions",
        json=OPENAI_BODY,
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )


def limited_key(pool: Pool, **limits: Any) -> tuple[str, int]:
    """A key of the pool's user with exactly the given limits (new keys start with a rate limit)."""
    key, key_id = pool.new_key()
    pool.admin.ok("PUT", f"/api/admin/api-keys/{key_id}", json={"rate_limit": 0, **limits})
    return key, key_id


def capped_user_key(pool: Pool) -> str:
    """A key without limits of its own, whose user may run two requests at a time."""
    username = f"c{uuid.uuid4().hex[:10]}"
    fields = {"username": username, "password": "secret-pass", "max_concurrency": 2}
    pool.admin.ok("POST", "/api/admin/users", json=fields)
    user = Api(pool.relay.base_url)
    user.login(username, "secret-pass")
    created = user.ok("POST", "/api/api-keys", json={"name": "capped"})
    user.close()
    settings = {"account_group_id": pool.group_id, "rate_limit": 0}
    pool.admin.ok("PUT", f"/api/admin/api-keys/{created['id']}", json=settings)
    return str(created["key"])


def unlimited_traffic(pool: Pool, rounds: int = 3, per_round: int = 12) -> list[httpx.Response]:
    """Concurrent requests of the unlimited key (Claude, streamed Claude with a sticky session,
    OpenAI), in rounds spread over more than the breaker's 1 s, so probes of Redis happen."""

    def one(i: int) -> httpx.Response:
        if i % 3 == 0:
            return claude(pool, pool.key)
        if i % 3 == 1:
            return claude(pool, pool.key, stream=True, session=f"conversation-{i % 2}")
        return openai_chat(pool, pool.key)

    answers: list[httpx.Response] = []
    with ThreadPoolExecutor(max_workers=6) as workers:
        for round_ in range(rounds):
            if round_:
                time.sleep(0.6)
            answers.extend(workers.map(one, range(per_round)))
    return answers


def test_redis_down_unlimited_keys_served_limits_refused(pool: Pool, redis_server: RedisServer) -> None:
    base = pool.relay.base_url
    rated, rated_id = limited_key(pool, rate_limit=1000)
    daily, _ = limited_key(pool, daily_limit=1000)
    monthly, _ = limited_key(pool, monthly_quota=1000.0)
    capped = capped_user_key(pool)
    for key in (pool.key, rated, daily, monthly, capped):
        assert claude(pool, key).status_code == 200
    ready = httpx.get(f"{base}/ready", timeout=10)
    assert (ready.status_code, ready.json()) == (200, {"status": "ready", "database": "ok", "state": "ok"})

    redis_server.stop()

    answers = unlimited_traffic(pool)
    failed = [(r.status_code, r.text[:200]) for r in answers if r.status_code != 200]
    assert not failed, failed
    assert all(r.text for r in answers)

    # Limits that only Redis can check fail closed, in each client's error shape.
    refused = claude(pool, rated)
    assert refused.status_code == 503, refused.text
    assert refused.json() == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": STATE_UNAVAILABLE},
    }
    refused = openai_chat(pool, rated)
    assert refused.status_code == 503 and refused.json()["error"]["message"] == STATE_UNAVAILABLE
    for key in (daily, monthly, capped):
        refused = claude(pool, key)
        assert refused.status_code == 503 and refused.json()["error"]["message"] == STATE_UNAVAILABLE

    # The refusals are in the request log, like any other refusal.
    logs = pool.logs(rated_id, expect=3)  # one success before the outage, two refusals
    assert sorted(log["status_code"] for log in logs) == [200, 503, 503]
    assert {log["error_message"] for log in logs if log["status_code"] == 503} == {STATE_UNAVAILABLE}

    ready = httpx.get(f"{base}/ready", timeout=10)
    assert ready.status_code == 503
    assert ready.json() == {"status": "unavailable", "database": "ok", "state": "unavailable"}
    health = httpx.get(f"{base}/health", timeout=10)
    assert (health.status_code, health.json()) == (200, {"status": "ok"})

    # /api routes that need Redis (the login counter here) answer a 503 envelope, not a 500.
    login = httpx.post(
        f"{base}/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}, timeout=10
    )
    assert login.status_code == 503 and login.json()["code"] == 503, login.text
    # Admin writes are saved and answered as saved: the instances pick them up once Redis is back.
    status, body = pool.admin.put(f"/api/admin/api-keys/{rated_id}", json={"rate_limit": 2000})
    assert status == 200, body
    account_id = next(iter(pool.accounts.values()))
    status, body = pool.admin.put(f"/api/admin/accounts/{account_id}", json={"priority": 60})
    assert status == 200, body

    redis_server.start()  # same port, empty: the relay must reconnect and re-seed what it needs

    ready = _ready(base, within=5)
    assert (ready.status_code, ready.json()) == (200, {"status": "ready", "database": "ok", "state": "ok"})
    for key in (rated, daily, monthly, capped, pool.key):
        assert claude(pool, key).status_code == 200
    assert (
        httpx.post(
            f"{base}/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}, timeout=10
        ).status_code
        == 200
    )


def test_stalled_redis_costs_at_most_its_timeout(pool: Pool, redis_server: RedisServer) -> None:
    base = pool.relay.base_url
    rated, _ = limited_key(pool, rate_limit=1000)
    assert claude(pool, rated).status_code == 200

    redis_server.pause()
    try:
        for _ in range(3):  # spread over the breaker's interval: each probe is bounded too
            started = time.monotonic()
            answer = claude(pool, pool.key, stream=True, session="stalled")
            assert answer.status_code == 200, answer.text
            assert time.monotonic() - started < STALL_BUDGET
            started = time.monotonic()
            refused = claude(pool, rated)
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["message"] == STATE_UNAVAILABLE
            assert time.monotonic() - started < STALL_BUDGET
            time.sleep(0.6)
        started = time.monotonic()
        ready = httpx.get(f"{base}/ready", timeout=10)
        assert ready.status_code == 503 and ready.json()["state"] == "unavailable"
        assert time.monotonic() - started < STALL_BUDGET
        assert httpx.get(f"{base}/health", timeout=10).status_code == 200
    finally:
        redis_server.resume()

    assert _ready(base, within=5).status_code == 200
    assert claude(pool, rated).status_code == 200
