"""Mixed traffic with faults, then SIGTERM: every request that reached the gateway is one row.

Four kinds of traffic run at once, each through its own key and account group so its upstream
behaviour is fixed: failover (the first account answers 500, the next serves), cut streams and
cut answers (billed for what was seen, or failed over until no account is left), clients that give
up before the first byte, and refusals (bad JSON, an unknown model, a rate-limited key). A few
slow streams are still running when the relay gets SIGTERM. With a recorder flush interval far
longer than the test, every row is still queued at that moment: the graceful stop must write
them all, before any restart, and leave no journal segment behind.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ..support import ADMIN_PASSWORD, Api, RelayServer
from .conftest import Upstream
from .restarts import Backend, billed, journal_segments, logged, started_relay

MODEL = "claude-opus-4-8"
BODY = {"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
ROUNDS = 12


@dataclass
class Lane:
    """One key, its account group and the requests sent with it."""

    name: str
    key: str = ""
    key_id: int = 0
    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, status: int) -> None:
        with self.lock:
            self.sent += 1
            self.statuses[status] += 1


def _lane(
    admin: Api, relay: RelayServer, upstream: Upstream, name: str, modes: list[tuple[str, int]]
) -> Lane:
    """A group with one account per (mode, priority), and a fresh user key bound to it."""
    group = admin.ok("POST", "/api/admin/account-groups", json={"name": f"chaos-{name}"})
    for mode, priority in modes:
        credential = f"chaos-{name}-{mode}-{uuid.uuid4().hex[:6]}"
        admin.ok(
            "POST",
            "/api/admin/accounts",
            json={
                "name": credential,
                "type": "claude-official",
                "api_key": credential,
                "base_url": upstream.base_url,
                "priority": priority,
                "group_ids": [group["id"]],
            },
        )
        if mode == "slow":
            upstream.behave(credential, "slow", delay_ms=150)
        elif mode == "late":
            upstream.behave(credential, "ok", latency_ms=3000)
        elif mode != "ok":
            upstream.behave(credential, mode)
    username = f"chaos-{name}-{uuid.uuid4().hex[:6]}"
    admin.ok("POST", "/api/admin/users", json={"username": username, "password": "secret-pass"})
    user = Api(relay.base_url)
    user.login(username, "secret-pass")
    created = user.ok("POST", "/api/api-keys", json={"name": name})
    user.close()
    admin.ok("PUT", f"/api/admin/api-keys/{created['id']}", json={"account_group_id": group["id"]})
    return Lane(name, created["key"], created["id"])


def _post(
    http: httpx.Client, lane: Lane, body: object, *, stream: bool = False, raw: bytes | None = None
) -> None:
    headers = {"x-api-key": lane.key}
    payload = {**body, "stream": stream} if isinstance(body, dict) else body
    if raw is not None:
        reply = http.post("/claude/v1/messages", content=raw, headers=headers)
    else:
        with http.stream("POST", "/claude/v1/messages", json=payload, headers=headers) as reply:
            reply.read()
    lane.count(reply.status_code)


def _traffic(base_url: str, lanes: dict[str, Lane]) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as http:
        for n in range(ROUNDS):
            _post(http, lanes["failover"], BODY, stream=n % 2 == 0)
            _post(http, lanes["cut"], BODY, stream=n % 2 == 0)
            if n % 3 == 0:
                _post(http, lanes["refused"], BODY, raw=b"{broken")
                _post(http, lanes["refused"], {**BODY, "model": "gpt-4o"})  # no OpenAI account here
                _post(http, lanes["refused"], BODY)
    with httpx.Client(base_url=base_url, timeout=0.3) as impatient:
        for _ in range(3):
            lane = lanes["abandoned"]
            try:
                impatient.post("/claude/v1/messages", json=BODY, headers={"x-api-key": lane.key})
            except httpx.TimeoutException:
                lane.count(499)  # reached the gateway; the client left before any answer
            else:
                raise AssertionError("the late account answered within the client's patience")


def _one_stream(base_url: str, lane: Lane) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as http:
        _post(http, lane, BODY, stream=True)


def test_mixed_faults_then_sigterm_log_every_request_once(
    tmp_path: Path, backend: Backend, upstream: Upstream
) -> None:
    relay = started_relay(tmp_path, {**backend.env, "AIPROXY_RECORDER_FLUSH_INTERVAL": "60"})
    admin = Api(relay.base_url)
    admin.login("admin", ADMIN_PASSWORD)
    try:
        lanes = {
            "failover": _lane(admin, relay, upstream, "failover", [("500", 1000), ("ok", 1)]),
            "cut": _lane(admin, relay, upstream, "cut", [("cut", 1)]),
            "abandoned": _lane(admin, relay, upstream, "abandoned", [("late", 1)]),
            "refused": _lane(admin, relay, upstream, "refused", [("ok", 1)]),
            "draining": _lane(admin, relay, upstream, "draining", [("slow", 1)]),
        }
        admin.ok("PUT", f"/api/admin/api-keys/{lanes['refused'].key_id}", json={"rate_limit": 2})
        time.sleep(0.6 if "AIPROXY_REDIS_URL" in backend.env else 0)  # pool version check interval
        workers = [threading.Thread(target=_traffic, args=(relay.base_url, lanes)) for _ in range(3)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=120)
            assert not worker.is_alive()
        # Slow streams (about 2 s each) still running when the stop begins: they finish and count.
        draining = [
            threading.Thread(target=_one_stream, args=(relay.base_url, lanes["draining"])) for _ in range(3)
        ]
        for thread in draining:
            thread.start()
        time.sleep(0.5)
    finally:
        admin.close()
        relay.stop()  # SIGTERM
    for thread in draining:
        thread.join(timeout=30)
    assert journal_segments(tmp_path) == []  # the graceful stop wrote everything itself

    counts = {name: lane.sent for name, lane in lanes.items()}
    assert counts == {"failover": 36, "cut": 36, "abandoned": 9, "refused": 36, "draining": 3}, counts
    assert lanes["failover"].statuses == Counter({200: 36})
    assert lanes["draining"].statuses == Counter({200: 3})
    refused = lanes["refused"].statuses
    assert refused[400] == 12 and refused[200] + refused[429] + refused[403] + refused[503] == 24, refused
    for name, lane in lanes.items():
        rows = logged(backend, tmp_path, lane.key_id)
        assert len(rows) == lane.sent, (name, len(rows), lane.sent)
        assert len({request_id for request_id, _ in rows}) == len(rows)

    relay.start()  # the counters the recorder kept match the rows
    admin = Api(relay.base_url)
    admin.login("admin", ADMIN_PASSWORD)
    try:
        for name, lane in lanes.items():
            key = admin.ok("GET", f"/api/admin/api-keys/{lane.key_id}")
            served = billed(backend, tmp_path, lane.key_id)  # refusals and failures are only logged
            assert key["request_count"] == served, (name, key["request_count"], served)
        statuses = Counter(
            row["status"]
            for lane in lanes.values()
            for row in admin.ok("GET", f"/api/admin/logs?api_key_id={lane.key_id}&page_size=100")["items"]
        )
        assert statuses["client_gone"] == 9 and statuses["truncated"] >= 1, statuses
        cut = admin.ok("GET", f"/api/admin/logs?api_key_id={lanes['cut'].key_id}&page_size=100")["items"]
        assert all(r["cost"] > 0 for r in cut if r["status"] == "truncated")  # billed for what was seen
        assert all(r["cost"] == 0 for r in cut if r["status"] == "error")
    finally:
        admin.close()
        relay.stop()
