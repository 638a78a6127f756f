"""Cache actions taken on one instance hold on another (two relays on one PostgreSQL and one Redis).

Bindings live in Redis and marks in the database with a pool version in Redis, so instance B obeys
what the admin did on instance A: a dropped session is drawn afresh on B, and an account marked
unavailable on A gets no traffic from B until the mark ends or A lifts it. Draws are one-sided
(priority × weight 1000 × 1000 against 1 × 1), so where the favourite must be picked, the light
account comes first once in about a million.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from ..support import ADMIN_PASSWORD, Api, RelayServer
from .conftest import Upstream
from .restarts import Backend, logged, two_instances

CACHE = "/api/admin/cache"
FAVOURITE = {"priority": 1000, "weight": 1000}
SPARE = {"priority": 1, "weight": 1}
BODY = {"model": "claude-opus-4-8", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
POOL_POLL = 0.6  # instances look for pool changes every half second with Redis


class Setup:
    """On instance A: a user, a key bound to a new group, and two accounts of that group."""

    def __init__(self, first: RelayServer, upstream: Upstream) -> None:
        self.upstream = upstream
        self.admin = Api(first.base_url)
        self.admin.login("admin", ADMIN_PASSWORD)
        user = self.admin.ok(
            "POST",
            "/api/admin/users",
            json={"username": f"u{uuid.uuid4().hex[:10]}", "password": "user-pass-1"},
        )
        key = self.admin.ok("POST", f"/api/admin/users/{user['id']}/api-keys", json={"name": "main"})
        group = self.admin.ok("POST", "/api/admin/account-groups", json={"name": f"g-{uuid.uuid4().hex[:8]}"})
        self.admin.ok(
            "PUT", f"/api/admin/api-keys/{key['id']}", json={"account_group_id": group["id"], "rate_limit": 0}
        )
        self.key, self.key_id = key["key"], key["id"]
        self.accounts: dict[str, int] = {}
        for _ in range(2):
            credential = f"up-{uuid.uuid4().hex[:12]}"
            account = self.admin.ok(
                "POST",
                "/api/admin/accounts",
                json={
                    "name": credential,
                    "type": "claude-official",
                    "api_key": credential,
                    "base_url": upstream.base_url,
                    "group_ids": [group["id"]],
                },
            )
            self.accounts[credential] = account["id"]
        self.sent = 0

    def reweigh(self, heavy: str, light: str) -> None:
        self.admin.ok("PUT", f"/api/admin/accounts/{self.accounts[heavy]}", json=FAVOURITE)
        self.admin.ok("PUT", f"/api/admin/accounts/{self.accounts[light]}", json=SPARE)
        time.sleep(POOL_POLL)

    def send(self, relay: RelayServer, session: str | None = None) -> None:
        headers = {"x-api-key": self.key, "x-session-id": session or f"fresh-{uuid.uuid4().hex}"}
        answer = httpx.post(f"{relay.base_url}/claude/v1/messages", json=BODY, headers=headers, timeout=30)
        assert answer.status_code == 200, answer.text
        self.sent += 1

    def served(self) -> dict[str, int]:
        return {c: len(self.upstream.requests_for(c)) for c in self.accounts}

    def sessions(self, api: Api) -> list[dict[str, Any]]:
        return api.ok("GET", f"{CACHE}/sessions?api_key_id={self.key_id}")["items"]  # type: ignore[no-any-return]

    def all_logged(self, backend: Backend, data_dir: Path) -> None:
        """Every request of the key has exactly one request log row (both instances' recorders)."""
        deadline = time.monotonic() + 15
        while len(rows := logged(backend, data_dir, self.key_id)) < self.sent:
            assert time.monotonic() < deadline, (len(rows), self.sent)
            time.sleep(0.2)
        assert len(rows) == self.sent and len({request_id for request_id, _ in rows}) == self.sent


def _admin_on(relay: RelayServer) -> Api:
    api = Api(relay.base_url)
    api.login("admin", ADMIN_PASSWORD)
    return api


def test_a_session_dropped_on_one_instance_is_drawn_afresh_on_the_other(
    backend: Backend, upstream: Upstream, tmp_path: Path
) -> None:
    with two_instances(backend, tmp_path) as (first, second):
        setup = Setup(first, upstream)
        admin_b = _admin_on(second)
        try:
            one, two = list(setup.accounts)
            setup.reweigh(heavy=one, light=two)
            session = f"conversation-{uuid.uuid4().hex}"
            setup.send(second, session)  # bound on B, to the favourite
            assert setup.served() == {one: 1, two: 0}
            setup.reweigh(heavy=two, light=one)
            setup.send(second, session)
            assert setup.served() == {one: 2, two: 0}  # the binding holds against the draw

            (listed,) = setup.sessions(setup.admin)  # A lists what B bound
            assert listed["account_id"] == setup.accounts[one]
            (seen_on_b,) = setup.sessions(admin_b)
            assert {k: v for k, v in seen_on_b.items() if k not in ("age_seconds", "ttl_seconds")} == {
                k: v for k, v in listed.items() if k not in ("age_seconds", "ttl_seconds")
            }
            setup.admin.ok("DELETE", f"{CACHE}/sessions/{listed['session_id']}")
            assert setup.sessions(admin_b) == []

            setup.send(second, session)  # drawn afresh on B: the new favourite
            assert setup.served() == {one: 2, two: 1}
            (moved,) = setup.sessions(setup.admin)
            assert (moved["session_id"], moved["account_id"]) == (listed["session_id"], setup.accounts[two])
            # Several fresh sessions on B confirm the draw B makes now favours `two`.
            for _ in range(3):
                setup.send(second)
            assert setup.served() == {one: 2, two: 4}
            setup.all_logged(backend, tmp_path / "one")
        finally:
            admin_b.close()
            setup.admin.close()


def test_an_account_marked_unavailable_on_one_instance_gets_no_traffic_from_the_other(
    backend: Backend, upstream: Upstream, tmp_path: Path
) -> None:
    with two_instances(backend, tmp_path) as (first, second):
        setup = Setup(first, upstream)
        try:
            marked, spare = list(setup.accounts)
            setup.reweigh(heavy=marked, light=spare)
            setup.send(second)
            assert setup.served() == {marked: 1, spare: 0}

            admin_b = _admin_on(second)  # logged in first: the mark below must still hold when B is asked
            path = f"/api/admin/accounts/{setup.accounts[marked]}/cache/unavailable"
            # Long enough for the five requests and B's list on a loaded machine, short enough to wait out.
            answer = setup.admin.ok("POST", path, json={"duration": 5, "reason": "on A"})
            until = datetime.fromisoformat(answer["until"].replace("Z", "+00:00")).timestamp()
            time.sleep(POOL_POLL)
            for _ in range(5):
                setup.send(second)
            assert setup.served() == {marked: 1, spare: 5}
            (held,) = [a for a in admin_b.ok("GET", f"{CACHE}/unavailable") if a["reason"] == "on A"]
            admin_b.close()
            assert held["id"] == setup.accounts[marked]

            time.sleep(max(0.0, until - time.time()) + 0.2)  # the mark ends by itself, on B too
            setup.send(second)
            assert setup.served() == {marked: 2, spare: 5}

            setup.admin.ok("POST", path, json={"duration": 3600})
            time.sleep(POOL_POLL)
            for _ in range(3):
                setup.send(second)
            assert setup.served() == {marked: 2, spare: 8}
            assert setup.admin.ok("DELETE", path)["cleared"] is True  # lifted on A
            time.sleep(POOL_POLL)
            setup.send(second)
            assert setup.served() == {marked: 3, spare: 8}
            setup.all_logged(backend, tmp_path / "one")
        finally:
            setup.admin.close()
