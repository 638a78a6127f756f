"""Real-client equipment: the installed CLIs, one relay (SQLite) with the client filter in strict mode,
the fake upstream, and an account pool serving all three protocols.

The clients themselves do not depend on the storage backend, so one SQLite relay serves the whole
module. Strict mode with no allowed list lets only identified clients through: a CLI turn that the
seeded client types did not recognise would fail with 403 instead of passing unnoticed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import running_relay
from ..gateway.conftest import Pool, Upstream
from ..support import ADMIN_PASSWORD, Api, RelayServer, mock_upstream_process, unavailable
from .clis import ClientHome, missing_reason

STRICT_FILTER = {
    "filter_enabled": True,
    "filter_mode": "strict",
    "allowed_clients": [],
    "default_allow": False,
}
ACCOUNT_TYPES = ("claude-official", "openai", "gemini")


@pytest.fixture(scope="session")
def clients_installed() -> None:
    """Skip on a machine without node or the installed clients; fail where CI requires them."""
    reason = missing_reason()
    if reason:
        unavailable(reason)


@pytest.fixture(scope="module")
def client_upstream(clients_installed: None) -> Iterator[Upstream]:
    with mock_upstream_process() as client:
        yield Upstream(str(client.base_url).rstrip("/"), client)


@pytest.fixture(scope="module")
def client_relay(clients_installed: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayServer]:
    with running_relay("sqlite", tmp_path_factory.mktemp("clients-relay")) as server:
        yield server


@pytest.fixture(scope="module")
def client_admin(client_relay: RelayServer) -> Iterator[Api]:
    api = Api(client_relay.base_url)
    api.login("admin", ADMIN_PASSWORD)
    api.ok("PUT", "/api/admin/client-filter/config", json=STRICT_FILTER)
    yield api
    api.close()


@pytest.fixture(scope="module")
def client_pool(client_admin: Api, client_relay: RelayServer, client_upstream: Upstream) -> Iterator[Pool]:
    """A group with one account of each protocol and a user; tests take their own key (`new_key`)."""
    admin = client_admin
    group = admin.ok("POST", "/api/admin/account-groups", json={"name": f"g-{uuid.uuid4().hex[:10]}"})
    name = f"u{uuid.uuid4().hex[:10]}"
    data = admin.ok("POST", "/api/admin/users", json={"username": name, "password": "secret-pass"})
    user = Api(client_relay.base_url)
    user.login(name, "secret-pass")
    created = user.ok("POST", "/api/api-keys", json={"name": "main"})
    admin.ok("PUT", f"/api/admin/api-keys/{created['id']}", json={"account_group_id": group["id"]})
    pool = Pool(
        admin, client_relay, client_upstream, group["id"], user, data["id"], created["key"], created["id"]
    )
    for account_type in ACCOUNT_TYPES:
        pool.add_account(account_type, settle=False)
    yield pool
    user.close()


@pytest.fixture
def client_home(tmp_path: Path) -> ClientHome:
    return ClientHome(tmp_path)


@pytest.fixture(autouse=True)
def keys_deleted_after(client_pool: Pool) -> Iterator[None]:
    """Each test takes keys of its own (`new_key`); they go afterwards: a user may hold only ten."""
    yield
    listed = client_pool.user.ok("GET", "/api/api-keys")
    items = listed["items"] if isinstance(listed, dict) else listed
    for key in items:
        if key["id"] != client_pool.key_id:
            client_pool.user.ok("DELETE", f"/api/api-keys/{key['id']}")
