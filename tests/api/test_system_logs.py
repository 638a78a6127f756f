"""The system-log viewer and the app log files behind it, on a real relay.

Each backend gets a relay of its own (SQLite with text lines, PostgreSQL + Redis with JSON lines),
at log level info, with a fake server log root (AIPROXY_SERVER_LOG_DIR) holding whitelisted logs,
a file that is not whitelisted, and symlinks leading out of it. Next to the app's log directory
sit the data dir's secrets: no name, however written, may read them.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..conftest import BACKENDS, running_relay
from ..support import ADMIN_PASSWORD, Api, RelayServer

BASE = "/api/admin/system-logs"
MARKER = "TOP-SECRET-MARKER"
RELAY_KEY = "sk-" + "0123456789abcdef" * 4  # the shape of this relay's keys
SHORT_KEY = "sk-" + "fedcba9876543210" * 2 + "01234567"  # fits a login name (50 characters)
TEXT_LINE = re.compile(
    r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} \[(?P<level>[A-Z]+)\] (?P<logger>\S+): (?P<message>.*?)"
    r"(?: request_id=(?P<request_id>[0-9a-f]+))?$"
)
SYSLOG = [f"Dec 15 10:{n // 60 % 60:02d}:{n % 60:02d} host sshd[{n}]: line {n:04d}" for n in range(1, 1001)]
FAILED = {n for n in range(1, 1001) if n % 10 == 0}


@dataclass
class Relay:
    server: RelayServer
    log_format: str
    server_logs: Path

    @property
    def log_dir(self) -> Path:
        return self.server.data_dir / "logs"


def _server_logs(root: Path, outside: Path) -> None:
    """A server log root like /var/log, and secrets outside it."""
    outside.mkdir()
    (outside / "secret.txt").write_text(f"{MARKER}\n")
    (outside / "mysql").mkdir()
    (outside / "mysql" / "error.log").write_text(f"{MARKER}\n")
    (root / "nginx").mkdir(parents=True)
    lines = [
        f"{line} Failed password for root" if n in FAILED else line for n, line in enumerate(SYSLOG, start=1)
    ]
    (root / "syslog").write_text("\n".join(lines) + "\n")
    (root / "auth.log").write_text("Dec 15 10:00:00 host sshd[1]: Accepted publickey for ops\n")
    # Three MB, so the download really streams in several chunks.
    access = "".join(f'127.0.0.1 - - [15/Dec/2025] "GET /page/{n} HTTP/1.1" 200 512\n' for n in range(50_000))
    (root / "nginx" / "access.log").write_text(access)
    (root / "secret.log").write_text(f"{MARKER}\n")  # not whitelisted
    (root / "kern.log").symlink_to(outside / "secret.txt")  # whitelisted name, leads out
    (root / "mysql").symlink_to(outside / "mysql")  # a whitelisted directory, leads out


@contextlib.contextmanager
def _relay(backend: str, base: Path, log_format: str) -> Iterator[Relay]:
    server_logs = base / "var-log"
    _server_logs(server_logs, base / "outside")
    env = {
        "AIPROXY_LOG_LEVEL": "info",
        "AIPROXY_PROXY_ACCESS_LOG": "true",
        "AIPROXY_LOG_FORMAT": log_format,
        "AIPROXY_SERVER_LOG_DIR": str(server_logs),
    }
    with running_relay(backend, base / "data", redis_prefix="aiproxy-syslogs", env=env) as server:
        (server.data_dir / "planted-secret").write_text(f"{MARKER}\n")
        yield Relay(server, log_format, server_logs)


@pytest.fixture(scope="module", params=list(zip(BACKENDS, ["text", "json"], strict=True)), ids=BACKENDS)
def logs_relay(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    backend, log_format = request.param
    with _relay(
        backend, tmp_path_factory.mktemp("syslogs-" + backend.replace("+", "-")), log_format
    ) as relay:
        yield relay


@pytest.fixture
def admin(logs_relay: Relay) -> Iterator[Api]:
    api = Api(logs_relay.server.base_url)
    api.login("admin", ADMIN_PASSWORD)
    yield api
    api.close()


def _today() -> str:
    return time.strftime("%Y-%m-%d", time.gmtime())


def _entries(relay: Relay, lines: list[str]) -> list[dict[str, Any]]:
    """Each line as {level, logger, message, request_id}, whichever the relay's format."""
    entries = []
    for line in lines:
        if relay.log_format == "json":
            entry = json.loads(line)
        else:
            match = TEXT_LINE.match(line)
            if match is None:
                continue  # a traceback line
            entry = match.groupdict()
        entries.append({"request_id": None, **entry})
    return entries


def _read_all(admin: Api, name: str) -> list[str]:
    return admin.ok("GET", f"{BASE}/read", params={"file": name, "page_size": 1000})["lines"]  # type: ignore[no-any-return]


def _wait_for(
    read: Callable[[], list[dict[str, Any]]], found: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The first entry `found` accepts; access lines are written just after their response."""
    deadline = time.monotonic() + 5
    while True:
        for entry in read():
            if found(entry):
                return entry
        assert time.monotonic() < deadline, "no such log line"
        time.sleep(0.05)


def _category_entries(admin: Api, relay: Relay, category: str) -> Callable[[], list[dict[str, Any]]]:
    return lambda: _entries(relay, _read_all(admin, f"{category}-{_today()}.log"))


# -- the files the relay writes ------------------------------------------------------------------


def test_login_is_in_the_auth_file_and_a_failed_one_in_error_too(admin: Api, logs_relay: Relay) -> None:
    auth = _category_entries(admin, logs_relay, "auth")
    _wait_for(auth, lambda e: e["level"] == "INFO" and e["message"].startswith("login: admin (user "))
    anon = Api(logs_relay.server.base_url)
    status, _ = anon.post("/api/auth/login", json={"username": "nobody-here", "password": "wrong-pass"})
    assert status == 401
    failed = _wait_for(auth, lambda e: "nobody-here" in e["message"])
    assert failed["level"] == "WARNING" and failed["logger"] == "aiproxy.api.auth"
    error = _category_entries(admin, logs_relay, "error")
    assert _wait_for(error, lambda e: "nobody-here" in e["message"]) == failed
    anon.close()


def test_secrets_in_logged_messages_are_masked(admin: Api, logs_relay: Relay) -> None:
    anon = Api(logs_relay.server.base_url)
    for username in (SHORT_KEY, "ops password=hunter2"):
        assert anon.post("/api/auth/login", json={"username": username, "password": "wrong-pass"})[0] == 401
    # A key in a proxy path and in Gemini's ?key= (paths are logged, query strings never).
    assert httpx.post(f"{logs_relay.server.base_url}/claude/v1/{RELAY_KEY}", json={}).status_code == 404
    httpx.post(
        f"{logs_relay.server.base_url}/gemini/v1beta/models/x:generateContent?key={RELAY_KEY}", json={}
    )
    anon.close()
    auth = _category_entries(admin, logs_relay, "auth")
    _wait_for(auth, lambda e: "sk-***" in e["message"])
    _wait_for(auth, lambda e: "ops password=***" in e["message"])
    proxy = _category_entries(admin, logs_relay, "proxy")
    _wait_for(proxy, lambda e: "/claude/v1/sk-***" in e["message"])
    _wait_for(proxy, lambda e: "x:generateContent" in e["message"])
    for path in logs_relay.log_dir.iterdir():
        text = path.read_text()
        assert SHORT_KEY not in text and RELAY_KEY[3:] not in text and "hunter2" not in text, path.name


def test_proxy_request_line_carries_the_request_id(admin: Api, logs_relay: Relay) -> None:
    path = f"/claude/v1/messages-{uuid.uuid4().hex[:8]}"
    response = httpx.post(f"{logs_relay.server.base_url}{path}", headers={"x-api-key": RELAY_KEY}, json={})
    assert response.status_code == 404
    proxy = _category_entries(admin, logs_relay, "proxy")
    line = _wait_for(proxy, lambda e: f"POST {path} 404 " in e["message"])
    assert line["logger"] == "aiproxy.access.proxy"
    assert re.fullmatch(r"[0-9a-f]{24}", line["request_id"] or "")
    # The same id as the request log's row for that request.
    deadline = time.monotonic() + 5
    while True:
        rows = admin.ok("GET", "/api/admin/logs", params={"page_size": 100})["items"]
        row = next((r for r in rows if r["path"] == path), None)
        if row is not None or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert row is not None and row["request_id"] == line["request_id"]
    # Console requests are in the http file, without a request id.
    http = _category_entries(admin, logs_relay, "http")
    api_line = _wait_for(http, lambda e: "GET /api/admin/logs 200 " in e["message"])
    assert api_line["request_id"] is None


def test_every_line_has_the_configured_format(admin: Api, logs_relay: Relay) -> None:
    for path in logs_relay.log_dir.iterdir():
        for line in path.read_text().splitlines():
            if logs_relay.log_format == "json":
                assert set(json.loads(line)) >= {"time", "level", "logger", "message"}, line
            else:
                assert TEXT_LINE.match(line), line


# -- /files ---------------------------------------------------------------------------------------


def test_app_files_with_categories_and_filters(admin: Api, logs_relay: Relay) -> None:
    data = admin.ok("GET", f"{BASE}/files")
    names = [f["name"] for f in data["files"]]
    assert f"auth-{_today()}.log" in names and f"http-{_today()}.log" in names
    assert data["total"] == len(names)
    auth = next(f for f in data["files"] if f["name"] == f"auth-{_today()}.log")
    assert auth["category"] == "auth" and auth["date"] == _today()
    assert auth["size"] == (logs_relay.log_dir / auth["name"]).stat().st_size
    assert re.fullmatch(r"\d+ B|\d+\.\d\d [KMG]B", auth["size_human"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", auth["mod_time"])
    categories = {c["name"]: c for c in data["categories"]}
    for name in ("auth", "http", "proxy", "scheduler", "oauth", "billing", "client_filter", "operation"):
        assert name in categories
    for name in ("sync", "middleware", "main", "error"):
        assert name in categories
    assert categories["auth"]["label"] == "认证日志" and categories["auth"]["count"] >= 1
    assert sum(c["count"] for c in data["categories"]) == data["total"]
    only_auth = admin.ok("GET", f"{BASE}/files", params={"category": "auth"})
    assert {f["category"] for f in only_auth["files"]} == {"auth"}
    assert admin.ok("GET", f"{BASE}/files", params={"date": "2001-01-01"})["total"] == 0
    assert admin.ok("GET", f"{BASE}/files", params={"date": _today()})["total"] == data["total"]
    # A category is only compared with the names listed: any text finds nothing, reads nothing.
    for category in ("../../etc", "auth/../..", "unknown"):
        assert admin.ok("GET", f"{BASE}/files", params={"category": category})["files"] == []
    for bad in ({"date": "yesterday"}, {"date": "../.."}, {"date": "2025-12-15/../x"}, {"source": "etc"}):
        assert admin.get(f"{BASE}/files", params=bad)[0] == 400


def test_server_files_are_the_whitelisted_ones_present(admin: Api) -> None:
    data = admin.ok("GET", f"{BASE}/files", params={"source": "server"})
    assert [(f["name"], f["category"], f["date"]) for f in data["files"]] == [
        ("auth.log", "ssh", None),
        ("syslog", "system", None),
        ("nginx/access.log", "nginx", None),
    ]
    counts = {c["name"]: (c["label"], c["count"]) for c in data["categories"]}
    assert counts["system"] == ("系统日志", 1) and counts["ssh"][1] == 1 and counts["kernel"][1] == 0
    assert counts["mysql"][1] == 0  # its directory leads out of the root
    assert data["total"] == 3


# -- /read, /tail, /download -----------------------------------------------------------------------


def test_read_pages(admin: Api) -> None:
    def read(**params: Any) -> dict[str, Any]:
        return admin.ok("GET", f"{BASE}/read", params={"source": "server", "file": "syslog", **params})  # type: ignore[no-any-return]

    first = read()
    assert (first["file"], first["page"], first["page_size"], first["reverse"]) == ("syslog", 1, 200, False)
    assert (first["total_lines"], first["total_pages"]) == (1000, 5)
    assert [line.split(": ")[1][:9] for line in first["lines"]] == [f"line {n:04d}" for n in range(1, 201)]
    assert first["size_human"].endswith("KB") and first["mod_time"].endswith("Z")
    third = read(page=3, page_size=150)
    assert [int(line.split("line ")[1][:4]) for line in third["lines"]] == list(range(301, 451))
    newest = read(reverse="true", page_size=3)
    assert [int(line.split("line ")[1][:4]) for line in newest["lines"]] == [1000, 999, 998]
    assert newest["reverse"] is True
    found = read(keyword="FAILED PASSWORD", page_size=7, page=2)
    assert found["total_lines"] == 100 and found["total_pages"] == 15
    assert [int(line.split("line ")[1][:4]) for line in found["lines"]] == [n * 10 for n in range(8, 15)]
    found_newest = read(keyword="failed password", reverse="true", page_size=2)
    assert [int(line.split("line ")[1][:4]) for line in found_newest["lines"]] == [1000, 990]
    assert read(page=6)["lines"] == []
    clamped = read(page_size=5000)
    assert clamped["page_size"] == 1000 and len(clamped["lines"]) == 1000
    for bad in ({"page": 0}, {"page_size": 0}, {"page": "x"}):
        assert admin.get(f"{BASE}/read", params={"source": "server", "file": "syslog", **bad})[0] == 400
    assert admin.get(f"{BASE}/read", params={"source": "server"})[0] == 400  # no file


def test_tail(admin: Api) -> None:
    def tail(**params: Any) -> dict[str, Any]:
        return admin.ok("GET", f"{BASE}/tail", params={"source": "server", "file": "syslog", **params})  # type: ignore[no-any-return]

    default = tail()
    assert default["count"] == 100 and default["lines"][-1].endswith("Failed password for root")
    assert [int(line.split("line ")[1][:4]) for line in default["lines"]] == list(range(901, 1001))
    assert [int(line.split("line ")[1][:4]) for line in tail(lines=3)["lines"]] == [998, 999, 1000]
    assert tail(lines=5000)["count"] == 1000
    assert default["file"] == "syslog" and default["size"] > 0 and default["size_human"]
    assert admin.get(f"{BASE}/tail", params={"source": "server", "file": "syslog", "lines": 0})[0] == 400


def test_download(admin: Api, logs_relay: Relay) -> None:
    for source, name, saved, path in (
        ("server", "nginx/access.log", "nginx_access.log", logs_relay.server_logs / "nginx" / "access.log"),
        ("app", f"auth-{_today()}.log", f"auth-{_today()}.log", logs_relay.log_dir / f"auth-{_today()}.log"),
    ):
        expected = path.read_bytes()
        response = admin.http.get(
            f"{BASE}/download", params={"source": source, "file": name}, headers=admin.headers()
        )
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
        assert response.headers["content-disposition"] == f'attachment; filename="{saved}"'
        assert int(response.headers["content-length"]) == len(response.content)
        assert expected.startswith(response.content) and len(response.content) >= len(expected) - 4096
    big = admin.http.get(
        f"{BASE}/download", params={"source": "server", "file": "nginx/access.log"}, headers=admin.headers()
    )
    assert len(big.content) > 3_000_000 and big.content.count(b"\n") == 50_000


# -- DELETE /file ----------------------------------------------------------------------------------


def test_delete_app_logs_only(admin: Api, logs_relay: Relay) -> None:
    old = logs_relay.log_dir / "proxy-2001-01-01.log"
    old.write_text("old line\n")
    assert admin.delete(f"{BASE}/file", params={"file": old.name}) == (
        200,
        {"code": 0, "message": "success", "data": {"message": "删除成功"}},
    )
    assert not old.exists()
    assert admin.delete(f"{BASE}/file", params={"file": old.name})[0] == 404
    assert admin.delete(f"{BASE}/file", params={"source": "server", "file": "syslog"}) == (
        403,
        {"code": 403, "message": "不允许删除服务器日志文件"},
    )
    assert (logs_relay.server_logs / "syslog").exists()


def test_a_deleted_current_file_is_started_again(admin: Api, logs_relay: Relay) -> None:
    name = f"http-{_today()}.log"
    admin.ok("DELETE", f"{BASE}/file", params={"file": name})
    admin.ok("GET", "/api/profile")
    _wait_for(_category_entries(admin, logs_relay, "http"), lambda e: "GET /api/profile 200" in e["message"])


# -- what is refused ---------------------------------------------------------------------------------

HOSTILE = [
    "../planted-secret",
    "../jwt_secret",
    "../aiproxy.db",
    "..",
    "../../../../../../etc/passwd",
    "/etc/passwd",
    "/var/log/syslog",
    "logs/../planted-secret",
    f"auth-{time.strftime('%Y-%m-%d', time.gmtime())}.log/../../planted-secret",
    "..\\planted-secret",
    "....//planted-secret",
    "%2e%2e%2fplanted-secret",  # sent literally: the server decodes the query once, to this text
    "%252e%252e%252fplanted-secret",
    "..%2fplanted-secret",
    "．．／planted-secret",
    "~/.ssh/id_rsa",
    "file:///etc/passwd",
    "C:\\Windows\\win.ini",
    "nginx/../../outside/secret.txt",
    "nginx/../syslog",
    "./syslog",
    "syslog/",
    "nginx//access.log",
    " syslog",
    "syslog\n",
    "planted-secret",
    "btmp",
    ".hidden.log",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_read_nothing(admin: Api, name: str) -> None:
    for source, status in (("app", 400), ("server", 403)):
        for method, route in (("GET", "read"), ("GET", "tail"), ("GET", "download"), ("DELETE", "file")):
            expected = 403 if method == "DELETE" and source == "server" else status
            response = admin.http.request(
                method, f"{BASE}/{route}", params={"source": source, "file": name}, headers=admin.headers()
            )
            assert response.status_code == expected, (source, route, response.text)
            assert response.json()["code"] == expected
            assert MARKER not in response.text


def test_nul_and_encoded_traversal_in_the_raw_query(admin: Api, logs_relay: Relay) -> None:
    """Queries written by hand (httpx would encode them): a NUL byte is refused before any route;
    `%2e%2e%2f` decodes once to `../` and is refused like it."""
    for query in ("file=syslog%00.log", "file=..%2f..%2fplanted-secret", "file=%2e%2e%2fplanted-secret"):
        for source, status in (("app", 400), ("server", 400 if "%00" in query else 403)):
            url = f"{logs_relay.server.base_url}{BASE}/read?source={source}&{query}"
            response = httpx.get(url, headers=admin.headers())
            assert response.status_code == status, (query, source, response.text)
            assert MARKER not in response.text


def test_symlinks_leading_out_are_refused(admin: Api, logs_relay: Relay) -> None:
    link = logs_relay.log_dir / "evil-2001-01-01.log"
    link.symlink_to(logs_relay.server.data_dir / "planted-secret")
    try:
        listed = [f["name"] for f in admin.ok("GET", f"{BASE}/files")["files"]]
        assert link.name not in listed
        cases = [
            ("app", link.name),
            ("server", "kern.log"),
            ("server", "mysql/error.log"),
            ("server", "secret.log"),
        ]
        for source, name in cases:
            for route in ("read", "tail", "download"):
                status, body = admin.get(f"{BASE}/{route}", params={"source": source, "file": name})
                assert (status, body) == (403, {"code": 403, "message": "不允许访问该日志文件"}), (
                    source,
                    name,
                )
        assert admin.delete(f"{BASE}/file", params={"file": link.name})[0] == 403
        assert (logs_relay.server.data_dir / "planted-secret").exists()
    finally:
        link.unlink()


def test_missing_files_are_404(admin: Api) -> None:
    for source, name in (("app", "auth-2001-01-01.log"), ("server", "fail2ban.log")):
        assert admin.get(f"{BASE}/read", params={"source": source, "file": name}) == (
            404,
            {"code": 404, "message": "日志文件不存在"},
        )
    assert admin.get(f"{BASE}/read", params={"file": ""}) == (400, {"code": 400, "message": "文件名不能为空"})


def test_users_and_anonymous_are_refused(admin: Api, logs_relay: Relay) -> None:
    name = f"u{uuid.uuid4().hex[:10]}"
    admin.ok("POST", "/api/admin/users", json={"username": name, "password": "secret-pass"})
    user = Api(logs_relay.server.base_url)
    user.login(name, "secret-pass")
    anon = Api(logs_relay.server.base_url)
    params = {"file": "syslog", "source": "server"}
    for method, route in (("GET", "files"), ("GET", "read"), ("GET", "tail"), ("GET", "download")):
        assert user.call(method, f"{BASE}/{route}", params=params) == (
            403,
            {"code": 403, "message": "需要管理员权限"},
        )
        assert anon.call(method, f"{BASE}/{route}", params=params)[0] == 401
    assert user.delete(f"{BASE}/file", params={"file": f"auth-{_today()}.log"})[0] == 403
    assert (logs_relay.log_dir / f"auth-{_today()}.log").exists()
    user.close()
    anon.close()
