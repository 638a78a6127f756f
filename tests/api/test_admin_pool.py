"""Admin: account groups, outbound proxies (with a real connectivity test), error rules and messages."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from aiproxy.store.error_rules import DEFAULT_ERROR_RULES

from ..support import Api, RelayServer, free_port
from .test_admin_accounts import assert_bumped, create_account, pool_version

GROUPS = "/api/admin/account-groups"
PROXIES = "/api/admin/proxy-configs"
RULES = "/api/admin/error-rules"
MESSAGES = "/api/admin/error-messages"
PROXY_PASSWORD = "pr0xy-pass-Secret"


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------- account groups
def test_group_crud(admin: Api, relay: RelayServer) -> None:
    name = _name("grp")
    before = pool_version(relay)
    status, body = admin.post(GROUPS, json={"name": name, "description": "main pool", "platform": "claude"})
    assert (status, body["message"]) == (201, "created")
    group = body["data"]
    assert (group["is_default"], group["account_count"], group["platform"]) == (False, 0, "claude")
    before = assert_bumped(relay, before)
    assert admin.post(GROUPS, json={"name": name}) == (
        400,
        {"code": 400, "message": "group name already exists"},
    )
    status, body = admin.post(GROUPS, json={"name": _name("grp"), "platform": "Not Valid"})
    assert status == 400 and body["message"].startswith("platform:")
    assert admin.post(GROUPS, json={})[1]["message"] == "name: field required"

    path = f"{GROUPS}/{group['id']}"
    other = admin.ok("POST", GROUPS, json={"name": _name("grp")})
    assert admin.put(path, json={"name": other["name"]})[1]["message"] == "group name already exists"
    updated = admin.ok("PUT", path, json={"description": "renamed", "name": name})
    assert (updated["description"], updated["name"], updated["account_ids"]) == ("renamed", name, [])
    assert_bumped(relay, before)

    listed = admin.ok("GET", f"{GROUPS}?page_size=100")
    assert listed["total"] >= 2 and group["id"] in [g["id"] for g in listed["items"]]
    assert {group["id"], other["id"]} <= {g["id"] for g in admin.ok("GET", f"{GROUPS}/all")}

    assert admin.ok("DELETE", path) is None
    missing = (404, {"code": 404, "message": "account group not found"})
    assert admin.get(path) == missing
    assert admin.put(path, json={"description": "x"}) == missing
    assert admin.delete(path) == missing
    assert admin.post(f"{path}/accounts", json={"account_id": 1}) == missing


def test_only_one_default_group(admin: Api) -> None:
    first = admin.ok("POST", GROUPS, json={"name": _name("def"), "is_default": True})
    second = admin.ok("POST", GROUPS, json={"name": _name("def"), "is_default": True})
    defaults = [g["id"] for g in admin.ok("GET", f"{GROUPS}/all") if g["is_default"]]
    assert defaults == [second["id"]]
    assert admin.ok("PUT", f"{GROUPS}/{first['id']}", json={"is_default": True})["is_default"] is True
    defaults = [g["id"] for g in admin.ok("GET", f"{GROUPS}/all") if g["is_default"]]
    assert defaults == [first["id"]]
    admin.ok("PUT", f"{GROUPS}/{first['id']}", json={"is_default": False})
    assert not [g for g in admin.ok("GET", f"{GROUPS}/all") if g["is_default"]]


def test_group_membership(admin: Api, relay: RelayServer) -> None:
    group = admin.ok("POST", GROUPS, json={"name": _name("mem")})
    account = create_account(admin)
    path = f"{GROUPS}/{group['id']}/accounts"
    before = pool_version(relay)
    added = admin.ok("POST", path, json={"account_id": account["id"]})
    assert added == {"group_id": group["id"], "account_id": account["id"], "added": True}
    before = assert_bumped(relay, before)
    assert admin.ok("POST", path, json={"account_id": account["id"]})["added"] is False  # idempotent
    assert admin.post(path, json={"account_id": 999999}) == (
        404,
        {"code": 404, "message": "account not found"},
    )
    assert admin.post(path, json={})[1]["message"] == "account_id: field required"

    detail = admin.ok("GET", f"{GROUPS}/{group['id']}")
    assert (detail["account_ids"], detail["account_count"]) == ([account["id"]], 1)
    assert detail["accounts"][0] == {
        "id": account["id"],
        "name": account["name"],
        "type": "openai",
        "enabled": True,
        "status": "valid",
        "priority": 50,
        "weight": 100,
    }
    assert admin.ok("GET", f"/api/admin/accounts/{account['id']}")["group_ids"] == [group["id"]]
    counted = next(g for g in admin.ok("GET", f"{GROUPS}/all") if g["id"] == group["id"])
    assert counted["account_count"] == 1

    assert admin.ok("DELETE", f"{path}/{account['id']}")["removed"] is True
    assert_bumped(relay, before)
    assert admin.ok("DELETE", f"{path}/{account['id']}")["removed"] is False
    assert admin.ok("GET", f"{GROUPS}/{group['id']}")["account_ids"] == []


def test_keys_and_users_bind_to_groups(admin: Api, make_user: Callable[..., Api]) -> None:
    group = admin.ok("POST", GROUPS, json={"name": _name("bind")})
    account = create_account(admin, group_ids=[group["id"]])
    uid = make_user().user["id"]  # type: ignore[attr-defined]
    user = admin.ok("PUT", f"/api/admin/users/{uid}", json={"account_group_id": group["id"]})
    assert user["account_group_id"] == group["id"]
    key = admin.ok("POST", f"/api/admin/users/{uid}/api-keys", json={"name": "bound"})
    bound = admin.ok("PUT", f"/api/admin/api-keys/{key['id']}", json={"account_group_id": group["id"]})
    assert bound["account_group_id"] == group["id"]

    # Deleting the group unbinds them and drops the memberships; the account stays.
    admin.ok("DELETE", f"{GROUPS}/{group['id']}")
    assert admin.ok("GET", f"/api/admin/users/{uid}")["account_group_id"] is None
    assert admin.ok("GET", f"/api/admin/api-keys/{key['id']}")["account_group_id"] is None
    assert admin.ok("GET", f"/api/admin/accounts/{account['id']}")["group_ids"] == []


# ---------------------------------------------------------------- proxy configs
def test_proxy_crud_and_password_secrecy(admin: Api, relay: RelayServer) -> None:
    before = pool_version(relay)
    fields = {"name": _name("px"), "type": "socks5", "host": "127.0.0.1", "port": 1080, "username": "bob"}
    status, body = admin.post(PROXIES, json={**fields, "password": PROXY_PASSWORD, "remark": "office"})
    assert (status, body["message"]) == (201, "created")
    proxy = body["data"]
    before = assert_bumped(relay, before)
    assert {
        k: proxy[k] for k in ("type", "host", "port", "username", "has_password", "enabled", "is_default")
    } == {
        "type": "socks5",
        "host": "127.0.0.1",
        "port": 1080,
        "username": "bob",
        "has_password": True,
        "enabled": True,
        "is_default": False,
    }
    assert "password" not in proxy and "password_encrypted" not in proxy
    path = f"{PROXIES}/{proxy['id']}"

    for bad, field in (({"port": 70000}, "port"), ({"type": "ftp"}, "type"), ({"host": "a b"}, "host")):
        status, body = admin.post(PROXIES, json={**fields, **bad})
        assert status == 400 and body["message"].startswith(f"{field}:"), body
    assert admin.post(PROXIES, json={"name": "x"})[1]["message"] == "type: field required"

    kept = admin.ok("PUT", path, json={"password": "", "port": 1081})
    assert (kept["port"], kept["has_password"]) == (1081, True)
    before = assert_bumped(relay, before)
    assert admin.ok("PUT", path, json={"clear_password": True})["has_password"] is False
    assert admin.ok("PUT", path, json={"password": PROXY_PASSWORD})["has_password"] is True

    assert admin.ok("PUT", f"{path}/toggle") == {"id": proxy["id"], "enabled": False}
    assert proxy["id"] not in [p["id"] for p in admin.ok("GET", f"{PROXIES}/enabled")]
    admin.ok("PUT", f"{path}/toggle")
    assert proxy["id"] in [p["id"] for p in admin.ok("GET", f"{PROXIES}/enabled")]
    assert proxy["id"] in [p["id"] for p in admin.ok("GET", PROXIES)]

    seen = json.dumps([admin.ok("GET", PROXIES), admin.ok("GET", path)])
    logs = admin.ok("GET", "/api/admin/operation-logs?resource=proxy_config&page_size=100")["items"]
    bodies = " ".join(admin.ok("GET", f"/api/admin/operation-logs/{e['id']}")["request_body"] for e in logs)
    assert PROXY_PASSWORD not in seen and PROXY_PASSWORD not in bodies

    # Accounts using a deleted proxy fall back to a direct connection.
    account = create_account(admin, proxy_config_id=proxy["id"])
    assert account["proxy_config_id"] == proxy["id"]
    assert admin.ok("DELETE", path) is None
    assert_bumped(relay, before)
    assert admin.ok("GET", f"/api/admin/accounts/{account['id']}")["proxy_config_id"] is None
    missing = (404, {"code": 404, "message": "proxy config not found"})
    assert admin.get(path) == missing
    assert admin.put(path, json={"port": 2}) == missing
    assert admin.put(f"{path}/toggle") == missing
    assert admin.put(f"{path}/default") == missing
    assert admin.delete(path) == missing


def test_default_proxy(admin: Api) -> None:
    admin.ok("DELETE", f"{PROXIES}/default")
    assert admin.ok("GET", f"{PROXIES}/default") is None
    one, two = (
        admin.ok(
            "POST", PROXIES, json={"name": _name("px"), "type": "http", "host": "10.0.0.1", "port": 3128}
        )
        for _ in range(2)
    )
    assert admin.ok("PUT", f"{PROXIES}/{one['id']}/default")["is_default"] is True
    assert admin.ok("GET", f"{PROXIES}/default")["id"] == one["id"]
    admin.ok("PUT", f"{PROXIES}/{two['id']}/default")
    assert admin.ok("GET", f"{PROXIES}/default")["id"] == two["id"]
    assert admin.ok("GET", f"{PROXIES}/{one['id']}")["is_default"] is False
    assert admin.ok("DELETE", f"{PROXIES}/default") == {"cleared": 1}
    assert admin.ok("GET", f"{PROXIES}/default") is None


class FakeProxies:
    """Tiny SOCKS5 / HTTP proxies on 127.0.0.1, served from a background event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.ports: dict[str, int] = {}
        self.requests: list[str] = []
        self.servers: list[asyncio.Server] = []

    def start(self) -> None:
        self.thread.start()
        handlers: dict[str, Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]] = {
            "socks_open": self._socks_open,
            "socks_auth": self._socks_auth,
            "http": self._http,
            "http_auth": self._http_auth,
            "not_a_proxy": self._banner,
            "silent": self._silent,
        }
        for name, handler in handlers.items():
            server = asyncio.run_coroutine_threadsafe(
                asyncio.start_server(self._closing(handler), "127.0.0.1", 0), self.loop
            ).result(5)
            self.servers.append(server)
            self.ports[name] = server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    async def _shutdown(self) -> None:
        for server in self.servers:
            server.close()
        # Handlers still waiting (the silent proxy) end before the loop does.
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    @staticmethod
    def _closing(handler: Any) -> Any:
        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await handler(reader, writer)
                await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        return run

    async def _socks_open(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        version, count = await reader.readexactly(2)
        methods = await reader.readexactly(count)
        assert version == 5 and 0 in methods
        writer.write(b"\x05\x00")

    async def _socks_auth(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, count = await reader.readexactly(2)
        await reader.readexactly(count)
        writer.write(b"\x05\x02")
        _, size = await reader.readexactly(2)
        user = await reader.readexactly(size)
        password = await reader.readexactly((await reader.readexactly(1))[0])
        writer.write(b"\x01\x00" if (user, password) == (b"bob", PROXY_PASSWORD.encode()) else b"\x01\x01")

    async def _http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.requests.append((await reader.readuntil(b"\r\n\r\n")).decode())
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

    async def _http_auth(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        token = base64.b64encode(f"bob:{PROXY_PASSWORD}".encode()).decode()
        good = f"Proxy-Authorization: Basic {token}\r\n" in head
        writer.write(
            b"HTTP/1.1 200 OK\r\n\r\n" if good else b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n"
        )

    async def _banner(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n")

    async def _silent(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)


@pytest.fixture
def fake_proxies() -> Iterator[FakeProxies]:
    proxies = FakeProxies()
    proxies.start()
    yield proxies
    proxies.stop()


def test_proxy_connectivity_test(admin: Api, fake_proxies: FakeProxies) -> None:
    ports = fake_proxies.ports

    def probe(**body: Any) -> dict[str, Any]:
        result = admin.ok("POST", f"{PROXIES}/test", json={"host": "127.0.0.1", **body})
        assert set(result) == {"success", "latency_ms", "message"} and result["latency_ms"] >= 0
        return result  # type: ignore[no-any-return]

    assert probe(type="socks5", port=ports["socks_open"])["success"] is True
    good = probe(type="socks5", port=ports["socks_auth"], username="bob", password=PROXY_PASSWORD)
    assert good["success"] is True and "accepted the credentials" in good["message"]
    bad = probe(type="socks5", port=ports["socks_auth"], username="bob", password="wrong")
    assert bad == {**bad, "success": False, "message": "SOCKS5 proxy rejected the username or password"}
    assert (
        probe(type="socks5", port=ports["socks_auth"])["message"]
        == "SOCKS5 proxy requires a username and password"
    )
    assert "not a SOCKS5 proxy" in probe(type="socks5", port=ports["not_a_proxy"])["message"]

    answered = probe(type="http", port=ports["http"])
    assert (
        answered["success"] is True
        and answered["message"] == "HTTP proxy answered: 200 Connection established"
    )
    assert fake_proxies.requests[-1].startswith(f"CONNECT 127.0.0.1:{ports['http']} HTTP/1.1\r\n")
    probe(type="http", port=ports["http"], target="api.anthropic.com:443")
    assert fake_proxies.requests[-1].startswith("CONNECT api.anthropic.com:443 HTTP/1.1\r\n")
    authed = probe(type="http", port=ports["http_auth"], username="bob", password=PROXY_PASSWORD)
    assert authed["success"] is True
    refused = probe(type="http", port=ports["http_auth"], username="bob", password="wrong")
    assert refused["success"] is False and "407" in refused["message"]
    assert probe(type="http", port=ports["not_a_proxy"])["message"] == "not an HTTP proxy: unexpected reply"

    closed = probe(type="http", port=free_port())
    assert closed["success"] is False and closed["message"].startswith("connection failed")
    slow = probe(type="socks5", port=ports["silent"], timeout=0.3)
    assert slow == {**slow, "success": False, "message": "no answer within 0.3 s"}

    # A stored proxy is tested with its own (decrypted) credentials.
    fields = {"type": "socks5", "host": "127.0.0.1", "port": ports["socks_auth"], "username": "bob"}
    stored = admin.ok("POST", PROXIES, json={"name": _name("px"), **fields, "password": PROXY_PASSWORD})
    assert admin.ok("POST", f"{PROXIES}/test", json={"id": stored["id"]})["success"] is True
    assert admin.post(f"{PROXIES}/test", json={"id": 999999})[0] == 404
    assert admin.post(f"{PROXIES}/test", json={"port": 1})[1]["message"] == "host: field required"
    assert admin.post(f"{PROXIES}/test", json={"host": "127.0.0.1"})[1]["message"] == "port: field required"


# ---------------------------------------------------------------- error rules and messages
def test_error_rules(admin: Api, relay: RelayServer) -> None:
    reset = admin.ok("POST", f"{RULES}/reset-defaults")
    assert reset["created"] == len(DEFAULT_ERROR_RULES)
    rules = admin.ok("GET", RULES)
    priorities = [r["priority"] for r in rules]
    assert priorities == sorted(priorities, reverse=True)
    defaults = [r for r in rules if r["is_default"]]
    assert len(defaults) == len(DEFAULT_ERROR_RULES)
    unauthorized = next(r for r in defaults if r["status_code"] == 401)
    assert {k: unauthorized[k] for k in ("keyword", "target_status", "priority", "enabled")} == {
        "keyword": "",
        "target_status": "invalid",
        "priority": 100,
        "enabled": True,
    }

    before = pool_version(relay)
    status, body = admin.post(
        RULES,
        json={
            "name": "quota",
            "status_code": 400,
            "keyword": "quota exceeded",
            "target_status": "rate_limited",
            "priority": 150,
            "cooldown_seconds": 600,
        },
    )
    assert (status, body["message"]) == (201, "created")
    rule = body["data"]
    assert (rule["is_default"], rule["enabled"], rule["cooldown_seconds"]) == (False, True, 600)
    before = assert_bumped(relay, before)
    assert admin.ok("GET", RULES)[0]["id"] == rule["id"]  # highest priority first
    for bad, field in (
        ({"target_status": "frozen"}, "target_status"),
        ({"target_status": "valid", "status_code": 600}, "status_code"),
        ({"target_status": "valid", "cooldown_seconds": -1}, "cooldown_seconds"),
        ({}, "target_status"),
    ):
        status, body = admin.post(RULES, json=bad)
        assert status == 400 and body["message"].startswith(f"{field}:"), body

    path = f"{RULES}/{rule['id']}"
    assert admin.ok("PUT", path, json={"target_status": "valid", "keyword": "x"})["target_status"] == "valid"
    assert admin.ok("PUT", f"{path}/toggle") == {"id": rule["id"], "enabled": False}
    assert admin.ok("GET", path)["enabled"] is False
    assert_bumped(relay, before)

    # Resetting restores edited defaults and keeps the admin's own rules.
    admin.ok("PUT", f"{RULES}/{unauthorized['id']}", json={"target_status": "valid"})
    admin.ok("DELETE", f"{RULES}/{defaults[-1]['id']}")
    again = admin.ok("POST", f"{RULES}/reset-defaults")
    assert again == {"deleted": len(DEFAULT_ERROR_RULES) - 1, "created": len(DEFAULT_ERROR_RULES)}
    rules = admin.ok("GET", RULES)
    assert next(r for r in rules if r["status_code"] == 401 and r["is_default"])["target_status"] == "invalid"
    assert rule["id"] in [r["id"] for r in rules]

    assert admin.ok("DELETE", path) is None
    missing = (404, {"code": 404, "message": "error rule not found"})
    assert admin.get(path) == missing
    assert admin.put(path, json={"priority": 1}) == missing
    assert admin.put(f"{path}/toggle") == missing
    assert admin.delete(path) == missing


def test_error_messages(admin: Api, relay: RelayServer) -> None:
    before = pool_version(relay)
    status, body = admin.post(
        MESSAGES,
        json={"status_code": 429, "keyword": "rate", "message": "服务繁忙，请稍后再试", "description": "d"},
    )
    assert (status, body["message"]) == (201, "created")
    message = body["data"]
    assert (message["enabled"], message["message"]) == (True, "服务繁忙，请稍后再试")
    before = assert_bumped(relay, before)
    assert admin.post(MESSAGES, json={"status_code": 429})[1]["message"] == "message: field required"
    assert admin.post(MESSAGES, json={"status_code": 700, "message": "x"})[1]["message"].startswith(
        "status_code:"
    )
    assert message["id"] in [m["id"] for m in admin.ok("GET", MESSAGES)]

    path = f"{MESSAGES}/{message['id']}"
    assert admin.ok("PUT", path, json={"message": "请稍后重试"})["message"] == "请稍后重试"
    assert admin.ok("GET", path)["keyword"] == "rate"
    assert admin.ok("PUT", f"{path}/toggle") == {"id": message["id"], "enabled": False}
    assert_bumped(relay, before)
    assert admin.ok("DELETE", path) is None
    missing = (404, {"code": 404, "message": "error message not found"})
    assert admin.get(path) == missing
    assert admin.put(path, json={"message": "y"}) == missing
    assert admin.put(f"{path}/toggle") == missing
    assert admin.delete(path) == missing
