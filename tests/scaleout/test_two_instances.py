"""Two instances × two workers on one database and one Redis behave as one relay, exactly.

Each test sends its load at once over fresh connections split across both instances (so across
all four processes) and counts successes and refusals exactly; every request it sent must then
have exactly one request-log row, with the status the client saw (`assert_one_row_each`).

Quotas are exact by construction here: the requests' estimates equal their real use (the fake
upstream reports cache reads that make up the difference between the relay's token estimate and
the prompt it counts; the test model charges output tokens only, at a price whose costs are exact
binary fractions), so holds never differ from what is settled and no request can slip into a
quota that concurrent holds have spent.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from typing import Any

import httpx

from aiproxy import state_keys

from .conftest import CONFIG_POLL, POOL_POLL, TOKEN_COST, Cluster, Tenant
from .load import (
    ANSWER_TOKENS,
    Reply,
    assert_one_row_each,
    body,
    burst,
    fresh_connections,
    leave_streams,
    statuses,
)
from .traffic import Traffic

RATE_LIMITED = "请求过于频繁，请稍后再试"
DAILY_LIMIT = "已达到每日请求上限"
MONTHLY_QUOTA = "已达到本月费用配额"
USER_BUSY = "并发请求数超过限制"
ACCOUNTS_BUSY = "没有可用的账户（账户并发已满）"
PACKAGE_EXHAUSTED = "套餐额度已用完"
PACKAGE_DAILY = "已达到套餐每日请求上限"
ANSWER_COST = ANSWER_TOKENS * TOKEN_COST  # 2^-6 $: exact


def refused_as(replies: list[Reply], status: int, message: str) -> None:
    """Every refusal has the status and the message, in Anthropic's error shape."""
    for reply in replies:
        if reply.status != 200:
            assert reply.status == status and reply.json["type"] == "error", reply
            assert reply.json["error"]["type"] == "rate_limit_error" and reply.message == message, reply


def exact_estimates(cluster: Cluster, tenant: Tenant, content: bytes) -> None:
    """Make each answer use exactly the tokens the relay holds for it: input (1 token for "hi") and
    cache reads add up to the estimate of the prompt (its bytes / 4 + 1)."""
    for credential in tenant.credentials:
        cluster.behave(credential, "ok", cache_read=len(content) // 4)


def test_key_requests_per_minute(cluster: Cluster) -> None:
    limit = 20
    tenant = cluster.tenant(key={"rate_limit": limit})
    replies = burst(cluster.bases, tenant.key, 3 * limit, tag="rpm")
    assert statuses(replies) == {200: limit, 429: 2 * limit}
    refused_as(replies, 429, RATE_LIMITED)
    for reply in replies:
        if reply.status == 429:
            assert 1 <= int(reply.headers["retry-after"]) <= 60
    rows = cluster.rows(tenant.key_id, expect=len(replies))
    assert_one_row_each(rows, replies)
    assert {row.status for row in rows if row.status_code == 429} == {"rejected"}


def test_key_daily_limit(cluster: Cluster) -> None:
    limit = 15
    tenant = cluster.tenant(key={"daily_limit": limit})
    replies = burst(cluster.bases, tenant.key, 3 * limit, tag="daily")
    assert statuses(replies) == {200: limit, 429: 2 * limit}
    refused_as(replies, 429, DAILY_LIMIT)
    assert_one_row_each(cluster.rows(tenant.key_id, expect=len(replies)), replies)
    later = burst(cluster.bases, tenant.key, 4, tag="daily-later")  # and it stays spent
    assert statuses(later) == {429: 4}
    assert_one_row_each(cluster.rows(tenant.key_id, expect=len(replies) + 4), replies + later)


def test_key_monthly_dollar_quota(cluster: Cluster) -> None:
    fits = 12
    tenant = cluster.tenant(key={"monthly_quota": fits * ANSWER_COST})
    replies = burst(cluster.bases, tenant.key, 3 * fits, tag="month")
    assert statuses(replies) == {200: fits, 429: 2 * fits}
    refused_as(replies, 429, MONTHLY_QUOTA)
    rows = cluster.rows(tenant.key_id, expect=len(replies))
    assert_one_row_each(rows, replies)
    billed = cluster.billing(tenant.key_id)
    assert billed["records"] == billed["key_requests"] == fits
    assert billed["cost"] == billed["key_cost"] == fits * ANSWER_COST  # exact: every cost is 2^-6 $
    assert sum(row.cost for row in rows) == fits * ANSWER_COST


def _served_at_once(cluster: Cluster, tenant: Tenant, tag: str, n: int, delay_ms: int) -> list[Reply]:
    """`n` requests at once while the accounts take `delay_ms` to answer, so that all of them are
    admitted or refused while the first ones are still being answered."""
    cluster.upstream.post("/__mock/reset")  # peaks start again (and earlier tests' switches go)
    for credential in tenant.credentials:
        cluster.behave(credential, "slow", delay_ms=delay_ms)
    replies = burst(cluster.bases, tenant.key, n, tag=tag)
    # Every refusal came back before the first answer: the burst was one moment for the relay.
    first_answer = min(reply.done for reply in replies if reply.status == 200)
    assert all(reply.done < first_answer for reply in replies if reply.status != 200)
    return replies


def test_user_concurrency(cluster: Cluster) -> None:
    limit = 4
    tenant = cluster.tenant(user={"max_concurrency": limit})
    replies = _served_at_once(cluster, tenant, "user-conc", 3 * limit, delay_ms=2500)
    assert statuses(replies) == {200: limit, 429: 2 * limit}
    refused_as(replies, 429, USER_BUSY)
    (credential,) = tenant.credentials
    assert cluster.upstream_concurrency()["peak"][credential] == limit
    assert_one_row_each(cluster.rows(tenant.key_id, expect=len(replies)), replies)
    assert cluster.tenant_slots(tenant) == {
        state_keys.user_slots(tenant.user_id): 0,
        **_no_account_slots(tenant),
    }
    shown = cluster.admins[1].ok("GET", f"/api/admin/users/{tenant.user_id}/concurrency")
    assert (shown["current"], shown["max_concurrency"]) == (0, limit)


def _no_account_slots(tenant: Tenant) -> dict[str, int]:
    return {state_keys.account_slots(account_id): 0 for account_id in tenant.accounts.values()}


def test_account_concurrency(cluster: Cluster) -> None:
    limit = 3
    tenant = cluster.tenant(accounts=2, account={"max_concurrency": limit})
    replies = _served_at_once(cluster, tenant, "account-conc", 6 * limit, delay_ms=2500)
    assert statuses(replies) == {200: 2 * limit, 429: 4 * limit}
    refused_as(replies, 429, ACCOUNTS_BUSY)
    peaks = cluster.upstream_concurrency()["peak"]
    assert {credential: peaks[credential] for credential in tenant.credentials} == dict.fromkeys(
        tenant.credentials, limit
    )
    rows = cluster.rows(tenant.key_id, expect=len(replies))
    assert_one_row_each(rows, replies)
    served_by: dict[Any, int] = {}
    for row in rows:
        if row.status == "success":
            served_by[row.account_id] = served_by.get(row.account_id, 0) + 1
    assert served_by == dict.fromkeys(tenant.accounts.values(), limit)
    assert cluster.tenant_slots(tenant) == {
        state_keys.user_slots(tenant.user_id): 0,
        **_no_account_slots(tenant),
    }


def _package_burst(cluster: Cluster, package: dict[str, Any], fits: int, message: str, tag: str) -> None:
    content = body()
    tenant = cluster.tenant(package=package)
    exact_estimates(cluster, tenant, content)
    replies = burst(cluster.bases, tenant.key, 3 * fits, tag=tag, content=content)
    assert statuses(replies) == {200: fits, 429: 2 * fits}, tag
    refused_as(replies, 429, message)
    rows = cluster.rows(tenant.key_id, expect=len(replies))
    assert_one_row_each(rows, replies)
    assert tenant.package_id is not None
    held = cluster.user_package(tenant.package_id)
    served = [reply for reply in replies if reply.status == 200]
    assert held.used_tokens == sum(reply.tokens for reply in served)
    assert held.used_cost == fits * ANSWER_COST


def test_package_token_quota(cluster: Cluster) -> None:
    fits = 10
    per_request = len(body()) // 4 + 1 + ANSWER_TOKENS  # the estimate, and (exact_estimates) the use
    _package_burst(cluster, {"token_quota": fits * per_request}, fits, PACKAGE_EXHAUSTED, "pkg-tokens")


def test_package_dollar_quota(cluster: Cluster) -> None:
    fits = 10
    package = {"token_quota": 0, "cost_quota": fits * ANSWER_COST}
    _package_burst(cluster, package, fits, PACKAGE_EXHAUSTED, "pkg-dollars")


def test_package_daily_limit(cluster: Cluster) -> None:
    fits = 10
    _package_burst(cluster, {"token_quota": 0, "daily_limit": fits}, fits, PACKAGE_DAILY, "pkg-daily")


def test_sticky_sessions(cluster: Cluster) -> None:
    tenant = cluster.tenant(accounts=2)  # equal weights: without a binding, a coin toss per request
    conversations = [f"conversation-{uuid.uuid4().hex}" for _ in range(16)]
    headers = [{"x-session-id": conversation} for conversation in conversations]
    replies = burst(cluster.bases, tenant.key, len(conversations), tag="sticky-0", headers=headers)
    for turn in range(1, 5):  # every conversation at once, each turn on the other instance
        bases = cluster.bases if turn % 2 == 0 else cluster.bases[::-1]
        replies += burst(bases, tenant.key, len(conversations), tag=f"sticky-{turn}", headers=headers)
    assert statuses(replies) == {200: len(replies)}

    # Which account the upstream saw each request come from (the relay forwards the user agent).
    seen = {
        record["headers"]["user-agent"]: credential
        for credential in tenant.credentials
        for record in cluster.upstream_calls(credential)
    }
    served: dict[str, set[str]] = {conversation: set() for conversation in conversations}
    for reply in replies:
        served[conversations[int(reply.tag.rsplit("/", 1)[1])]].add(seen[reply.tag])
    assert all(len(accounts) == 1 for accounts in served.values()), served
    assert {account for (account,) in served.values()} == set(tenant.credentials)  # both were drawn
    assert_one_row_each(cluster.rows(tenant.key_id, expect=len(replies)), replies)


def _served_by(cluster: Cluster, tenant: Tenant) -> dict[str, int]:
    return {credential: len(cluster.upstream_calls(credential)) for credential in tenant.credentials}


def _fresh_sessions(n: int) -> list[dict[str, str]]:
    """A session of its own per request: the weighted draw, not a binding, picks each account."""
    return [{"x-session-id": f"single-{uuid.uuid4().hex}"} for _ in range(n)]


def test_a_cooldown_taken_on_one_instance_holds_on_the_other(cluster: Cluster) -> None:
    tenant = cluster.tenant(accounts=2)
    favourite, spare = tenant.credentials
    # The draw is weighted, not strict: at 1000 × 1000 against 1 × 1 the spare comes first once in a
    # million draws (against the defaults' 50 × 100 it would be once in 200, enough to fail this test).
    for credential, weighed in ((favourite, 1000), (spare, 1)):
        path = f"/api/admin/accounts/{tenant.accounts[credential]}"
        cluster.admin.ok("PUT", path, json={"priority": weighed, "weight": weighed})
    time.sleep(POOL_POLL)
    replies: list[Reply] = []

    for status, mark, first, other in (("429", "rate_limited", 0, 1), ("529", "overloaded", 1, 0)):
        before = _served_by(cluster, tenant)
        cluster.behave(favourite, status, count=1)
        # The favourite refuses on one instance, which fails over to the spare and marks it...
        replies += burst(
            [cluster.bases[first]], tenant.key, 1, tag=f"cool-{status}", headers=_fresh_sessions(1)
        )
        served = _served_by(cluster, tenant)
        # What the client got and what the favourite was last asked, should it not fail over.
        seen = (replies[-1].status, replies[-1].json, cluster.upstream_calls(favourite)[-2:])
        assert served == {favourite: before[favourite] + 1, spare: before[spare] + 1}, seen
        time.sleep(POOL_POLL)
        # ...and no worker of either instance sends it anything while it cools down.
        replies += burst(cluster.bases, tenant.key, 40, tag=f"cooling-{status}", headers=_fresh_sessions(40))
        assert _served_by(cluster, tenant) == {favourite: before[favourite] + 1, spare: before[spare] + 41}
        shown = cluster.admins[other].ok("GET", f"/api/admin/accounts/{tenant.accounts[favourite]}")
        assert shown["status"] == mark, shown
        # Lifted on the other instance: every worker draws the favourite again.
        path = f"/api/admin/accounts/{tenant.accounts[favourite]}/cache/unavailable"
        assert cluster.admins[other].ok("DELETE", path)["cleared"] is True
        time.sleep(POOL_POLL)
        replies += burst(cluster.bases, tenant.key, 8, tag=f"back-{status}", headers=_fresh_sessions(8))
        assert _served_by(cluster, tenant) == {favourite: before[favourite] + 9, spare: before[spare] + 41}

    assert statuses(replies) == {200: len(replies)}
    assert_one_row_each(cluster.rows(tenant.key_id, expect=len(replies)), replies)


LOGIN_LIMITED = "登录尝试次数过多，请稍后再试"
CAPTCHA_LIMITED = "验证码请求过于频繁，请稍后再试"


def _auth_burst(
    cluster: Cluster, n: int, ip: str, method: str, path: str, bodies: list[dict[str, Any]] | None = None
) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        async with fresh_connections() as client:
            return list(
                await asyncio.gather(
                    *(
                        client.request(
                            method,
                            cluster.bases[i % 2] + path,
                            json=bodies[i] if bodies else None,
                            headers={"x-forwarded-for": ip},
                        )
                        for i in range(n)
                    )
                )
            )

    return asyncio.run(run())


def test_login_limit_and_captchas_across_instances(cluster: Cluster) -> None:
    security = cluster.admin.ok("GET", "/api/admin/configs/category/security")
    logins, captchas = security["login_rate_limit_max"], security["captcha_rate_limit"]
    name = f"login{uuid.uuid4().hex[:8]}"
    cluster.admin.ok("POST", "/api/admin/users", json={"username": name, "password": "right-pass"})
    wrong = {"username": name, "password": "wrong-pass"}

    # Failed logins from one address, counted together by every worker of both instances.
    answers = _auth_burst(
        cluster, 3 * logins, "198.51.100.1", "POST", "/api/auth/login", [wrong] * (3 * logins)
    )
    assert Counter(a.status_code for a in answers) == {401: logins, 429: 2 * logins}
    for answer in answers:
        if answer.status_code == 429:
            assert (
                answer.json() == {"code": 429, "message": LOGIN_LIMITED}
                and int(answer.headers["retry-after"]) >= 1
            )
    right = {"username": name, "password": "right-pass"}
    assert [
        a.status_code for a in _auth_burst(cluster, 2, "198.51.100.1", "POST", "/api/auth/login", [right] * 2)
    ] == [
        429,
        429,
    ]
    assert _auth_burst(cluster, 1, "198.51.100.2", "POST", "/api/auth/login", [right])[0].status_code == 200

    cluster.set_config("captcha_enabled", True)
    try:
        time.sleep(CONFIG_POLL)  # every worker has reloaded its runtime configs
        images = _auth_burst(cluster, 3 * captchas, "198.51.100.3", "GET", "/api/auth/captcha")
        assert Counter(a.status_code for a in images) == {200: captchas, 429: 2 * captchas}
        issued = [a.json()["data"]["captcha_id"] for a in images if a.status_code == 200]
        assert all(
            a.json() == {"code": 429, "message": CAPTCHA_LIMITED} for a in images if a.status_code == 429
        )
        assert all(cluster.captcha_answer(captcha_id) for captcha_id in issued)

        # Issued on one instance, answered on both at once: exactly one attempt gets it.
        answer = cluster.captcha_answer(issued[0])
        attempt = {**right, "captcha_id": issued[0], "captcha": answer}
        tries = _auth_burst(cluster, 8, "198.51.100.4", "POST", "/api/auth/login", [attempt] * 8)
        assert Counter(a.status_code for a in tries) == {200: 1, 400: 7}
        assert {a.json()["message"] for a in tries if a.status_code == 400} == {"captcha expired or invalid"}
        # A wrong guess on one instance uses up a captcha issued on the other.
        answer = cluster.captcha_answer(issued[1])
        guess = {**right, "captcha_id": issued[1], "captcha": "zzzz" if answer != "ZZZZ" else "yyyy"}
        status, said = cluster.admins[1].post("/api/auth/login", json=guess)
        assert (status, said["message"]) == (400, "incorrect captcha")
        status, said = cluster.admins[0].post("/api/auth/login", json={**guess, "captcha": answer})
        assert (status, said["message"]) == (400, "captcha expired or invalid")
    finally:
        cluster.set_config("captcha_enabled", False)


def test_ten_thousand_streams_left_mid_answer_leave_no_slot(cluster: Cluster) -> None:
    total = 10_000
    tenant = cluster.tenant(
        accounts=2,
        account={"max_concurrency": 600},
        user={"max_concurrency": 1000},
        key={"monthly_quota": 1000.0},  # so that every request holds (and must settle) a budget too
    )
    for credential in tenant.credentials:
        cluster.behave(credential, "slow", delay_ms=1000)  # the rest of each answer would take seconds
    started = time.monotonic()
    left = leave_streams(cluster.bases, tenant.key, total, at_once=200, tag="left")
    elapsed = time.monotonic() - started
    assert Counter(status for _, status in left) == {200: total}
    rows = cluster.rows(tenant.key_id, expect=total, timeout=60)
    print(f"\n{total} streams left mid-answer in {elapsed:.1f} s; logged {len(rows)} rows")
    assert len(rows) == total and len({row.request_id for row in rows}) == total
    assert {row.user_agent for row in rows} == {tag for tag, _ in left}
    assert Counter((row.status, row.status_code, row.flags) for row in rows) == {
        ("client_gone", 200, "client_gone"): total
    }
    assert len({row.worker for row in rows}) == 2 * 2  # all four processes took their share
    # Billed once each, for what the stream had said (message_start: the input and 1 output token).
    seen = {row.total_tokens for row in rows}
    billed = cluster.billing(tenant.key_id)
    assert billed["records"] == billed["distinct_requests"] == billed["key_requests"] == total
    assert billed["tokens"] == billed["key_tokens"] == sum(row.total_tokens for row in rows)
    assert billed["cost"] == billed["key_cost"] == sum(row.cost for row in rows)
    print(f"tokens per row {seen}, cost {billed['cost']}")
    # No slot is left: not the user's, not the accounts' (expired leases included), no budget hold.
    deadline = time.monotonic() + 5
    while any(cluster.tenant_slots(tenant).values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert cluster.tenant_slots(tenant) == {
        state_keys.user_slots(tenant.user_id): 0,
        **_no_account_slots(tenant),
    }
    month = time.strftime("%Y%m", time.gmtime())
    budget = cluster.redis.hgetall(f"{cluster.prefix}budget:key:{tenant.key_id}:month:{month}")
    assert float(budget["held"]) == 0 and float(budget["used"]) == billed["cost"]
    assert [key for key in budget if key.startswith("h:")] == []
    for account_id in tenant.accounts.values():
        shown = cluster.admins[1].ok("GET", f"/api/admin/accounts/{account_id}/cache/concurrency")
        assert shown["current"] == 0, shown


def test_a_rolling_restart_under_load_loses_no_usage_row(cluster: Cluster) -> None:
    tenant = cluster.tenant()
    (credential,) = tenant.credentials
    # Answers take a while (a stream about 0.3 s), so that each stop finds requests in flight to drain.
    cluster.behave(credential, "slow", delay_ms=25)
    traffic = Traffic(cluster.bases, tenant.key)
    stopped_at: list[float] = []
    started = time.monotonic()
    traffic.start()
    try:
        for relay in cluster.instances:  # one at a time, the other serving meanwhile
            time.sleep(1.5)
            stopped_at.append(time.monotonic())
            relay.stop()  # SIGTERM: the workers stop accepting, finish what they have, write it
            relay.start()
        # Until the four new workers have served (an instance answers once its first worker is up).
        deadline = time.monotonic() + 60
        while len(cluster.workers(tenant.key_id)) < 2 * 2 * 2:
            assert time.monotonic() < deadline, cluster.workers(tenant.key_id)
            time.sleep(0.5)
    finally:
        traffic.stop()
    elapsed = time.monotonic() - started
    answered, failed = traffic.answered, traffic.failed
    print(
        f"\nrolling restart in {elapsed:.1f} s: {len(answered)} answered, {len(failed)} sent again elsewhere"
    )
    assert failed, "no connection failed: the restarts happened under no load"
    assert {a.status for a in answered} == {200}
    # Requests in flight when their instance was told to stop were finished and answered.
    for instance, at in enumerate(stopped_at):
        drained = [a for a in answered if a.instance == instance and a.started < at < a.done]
        assert drained, f"instance {instance} had nothing in flight when it was stopped"

    rows = cluster.rows(tenant.key_id, expect=len(answered), timeout=60)
    by_tag = {row.user_agent: row for row in rows}
    assert len(by_tag) == len(rows) == len(answered)  # one row per answer, none for a failed attempt
    for attempt in answered:
        row = by_tag[attempt.tag]
        assert (row.status, row.status_code, row.total_tokens) == ("success", 200, attempt.tokens), attempt
    assert len({row.worker for row in rows}) == 2 * 2 * 2  # four processes before, four after
    billed = cluster.billing(tenant.key_id)
    assert billed["records"] == billed["distinct_requests"] == billed["key_requests"] == len(answered)
    assert billed["tokens"] == billed["key_tokens"] == sum(a.tokens for a in answered)
