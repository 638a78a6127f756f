"""Gateway test equipment: the fake upstream as its own process, and isolated account pools.

Every test gets its own account group: its accounts join it and its user's key is bound to
it, so tests never see each other's accounts. Upstream credentials are unique per account,
so the fake upstream's behaviour switches and request records can be keyed by them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from ..conftest import BACKENDS
from ..support import (
    Api,
    RelayServer,
    create_pg_database,
    drop_pg_database,
    mock_upstream_process,
    redis_url_or_skip,
)
from .restarts import Backend


@dataclass
class Upstream:
    base_url: str
    http: httpx.Client

    def behave(self, key: str, mode: str, **fields: Any) -> None:
        response = self.http.post("/__mock/behaviour", json={"key": key, "mode": mode, **fields})
        assert response.status_code == 200, response.text

    def requests_for(self, key: str) -> list[dict[str, Any]]:
        records = self.http.get("/__mock/requests").json()
        return [r for r in records if r.get("api_key") == key]


@pytest.fixture(scope="session")
def upstream() -> Iterator[Upstream]:
    with mock_upstream_process() as client:
        yield Upstream(str(client.base_url).rstrip("/"), client)


@dataclass
class Pool:
    """One test's accounts, group, user and API key."""

    admin: Api
    relay: RelayServer
    upstream: Upstream
    group_id: int
    user: Api
    user_id: int
    key: str
    key_id: int
    accounts: dict[str, int] = field(default_factory=dict)  # upstream credential -> account id

    def add_account(self, type_: str = "claude-official", *, settle: bool = True, **fields: Any) -> str:
        """Create an account in this pool; returns its upstream credential. `settle=False` when
        more changes follow and the caller settles once after them."""
        credential = fields.pop("api_key", f"up-{uuid.uuid4().hex[:12]}")
        body = {
            "name": f"acc-{credential}",
            "type": type_,
            "api_key": credential,
            "base_url": self.upstream.base_url,
            "group_ids": [self.group_id],
            **fields,
        }
        if type_ == "azure-openai":
            body.setdefault("api_version", "2024-10-21")
            body.setdefault("deployment", "gpt-4o")
            body["endpoint"] = body.pop("base_url")
        account = self.admin.ok("POST", "/api/admin/accounts", json=body)
        self.accounts[credential] = account["id"]
        if settle:
            self.settle()
        return credential

    def account(self, credential: str) -> dict[str, Any]:
        return self.admin.ok("GET", f"/api/admin/accounts/{self.accounts[credential]}")

    def new_key(self, **fields: Any) -> tuple[str, int]:
        data = self.user.ok("POST", "/api/api-keys", json={"name": f"k{uuid.uuid4().hex[:6]}", **fields})
        self.admin.ok("PUT", f"/api/admin/api-keys/{data['id']}", json={"account_group_id": self.group_id})
        return data["key"], data["id"]

    def settle(self) -> None:
        """Gateways compare the pool version at most every 0.5 s when state is in Redis."""
        if "AIPROXY_REDIS_URL" in self.relay.env_overrides:
            time.sleep(0.6)

    def logs(self, key_id: int | None = None, *, expect: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Request logs of a key, once the recorder has written `expect` of them (newest first)."""
        key_id = key_id or self.key_id
        deadline = time.monotonic() + timeout
        while True:
            data = self.admin.ok("GET", f"/api/admin/logs?api_key_id={key_id}&page_size=100")
            if data["total"] >= expect:
                return data["items"]
            assert time.monotonic() < deadline, f"only {data['total']} of {expect} logs were written"
            time.sleep(0.05)


@pytest.fixture
def pool(admin: Api, relay: RelayServer, upstream: Upstream, make_user: Callable[..., Api]) -> Pool:
    group = admin.ok("POST", "/api/admin/account-groups", json={"name": f"g-{uuid.uuid4().hex[:10]}"})
    user = make_user()
    uid = user.user["id"]  # type: ignore[attr-defined]
    created = user.ok("POST", "/api/api-keys", json={"name": "main"})
    admin.ok(
        "PUT", f"/api/admin/api-keys/{created['id']}", json={"account_group_id": group["id"], "rate_limit": 0}
    )
    return Pool(admin, relay, upstream, group["id"], user, uid, created["key"], created["id"])


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """Storage for relays a test starts, kills and starts again (so not the shared `relay`)."""
    if request.param == "sqlite":
        yield Backend("sqlite", {})
        return
    env = {
        "AIPROXY_REDIS_URL": redis_url_or_skip(),
        "AIPROXY_REDIS_PREFIX": f"aiproxy-test:{uuid.uuid4().hex[:8]}:",
    }
    url, name = create_pg_database()
    env["AIPROXY_DATABASE_URL"] = url
    try:
        yield Backend(request.param, env, name)
    finally:
        drop_pg_database(name)
