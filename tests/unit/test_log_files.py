"""The system-log viewer's file logic: which names each source serves, paging, tail, expiry."""

from __future__ import annotations

import asyncio
import io
import os
from datetime import date
from pathlib import Path

import pytest

from aiproxy.errors import AppError, BadRequest, Forbidden, NotFound
from aiproxy.observe import log_files
from aiproxy.observe.log_files import (
    LogJanitor,
    delete_app_log,
    delete_expired,
    list_files,
    open_log,
    read_page,
    size_human,
    tail_lines,
)

LINES = [
    f"2025-12-15 10:00:{n % 60:02d} [INFO] line {n}{' ERROR here' if n % 7 == 0 else ''}"
    for n in range(1, 1001)
]


def _file(lines: list[str], trailing_newline: bool = True) -> tuple[io.BytesIO, int]:
    data = ("\n".join(lines) + ("\n" if trailing_newline and lines else "")).encode()
    return io.BytesIO(data), len(data)


def _expected(keyword: str | None, reverse: bool, page: int, page_size: int) -> tuple[list[str], int]:
    matching = [line for line in LINES if keyword is None or keyword.lower() in line.lower()]
    ordered = matching[::-1] if reverse else matching
    return ordered[(page - 1) * page_size : page * page_size], len(matching)


@pytest.mark.parametrize("chunk", [7, 4096, log_files.CHUNK])
@pytest.mark.parametrize("trailing_newline", [True, False])
def test_pages_match_a_plain_reading(
    monkeypatch: pytest.MonkeyPatch, chunk: int, trailing_newline: bool
) -> None:
    monkeypatch.setattr(log_files, "CHUNK", chunk)
    handle, size = _file(LINES, trailing_newline)
    for page_size in (1, 3, 200, 1000):
        for page in (1, 2, 5, 1001):
            for reverse in (False, True):
                for keyword in (None, "error", "LINE 99"):
                    got = read_page(
                        handle, size, page=page, page_size=page_size, keyword=keyword, reverse=reverse
                    )
                    assert got == _expected(keyword, reverse, page, page_size), (page_size, page, reverse)


@pytest.mark.parametrize("chunk", [7, log_files.CHUNK])
@pytest.mark.parametrize("trailing_newline", [True, False])
def test_tail_matches_a_plain_reading(
    monkeypatch: pytest.MonkeyPatch, chunk: int, trailing_newline: bool
) -> None:
    monkeypatch.setattr(log_files, "CHUNK", chunk)
    handle, size = _file(LINES, trailing_newline)
    for count in (1, 2, 100, 999, 1000, 5000):
        assert tail_lines(handle, size, count) == LINES[-count:]


def test_empty_and_tiny_files() -> None:
    handle, size = _file([])
    assert read_page(handle, size, page=1, page_size=10, keyword=None, reverse=False) == ([], 0)
    assert tail_lines(handle, size, 10) == []
    handle, size = _file(["only"], trailing_newline=False)
    assert read_page(handle, size, page=1, page_size=10, keyword=None, reverse=True) == (["only"], 1)
    assert tail_lines(handle, size, 10) == ["only"]


def test_long_lines_are_cut() -> None:
    limit = log_files.MAX_LINE_BYTES
    data = b"x" * (limit * 3) + b"\nshort\n" + b"y" * (limit + 5) + b"\n"
    lines, total = read_page(io.BytesIO(data), len(data), page=1, page_size=10, keyword=None, reverse=False)
    assert total == 3
    assert lines[0] == "x" * limit + "…" and lines[1] == "short" and lines[2] == "y" * limit + "…"
    assert tail_lines(io.BytesIO(data), len(data), 2) == ["short", "y" * limit + "…"]


def test_only_the_size_at_opening_is_read() -> None:
    handle, size = _file(LINES[:10])
    handle.seek(0, os.SEEK_END)
    handle.write(b"written later\n")
    assert read_page(handle, size, page=1, page_size=100, keyword=None, reverse=False)[1] == 10
    assert tail_lines(handle, size, 1) == [LINES[9]]
    assert b"".join(log_files.stream(handle, size)).count(b"\n") == 10


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.00 KB"), (1234567, "1.18 MB"), (5 * 1024**3, "5.00 GB")],
)
def test_size_human(size: int, text: str) -> None:
    assert size_human(size) == text


# -- names --------------------------------------------------------------------------------------


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    """(app log dir, server log root), with secrets beside them and symlinks leading to them."""
    (tmp_path / "jwt_secret").write_text("TOP-SECRET\n")
    app = tmp_path / "logs"
    app.mkdir()
    (app / "auth-2025-12-15.log").write_text("a\n")
    (app / "auth-2025-12-15.1.log").write_text("b\n")
    (app / "proxy-2025-12-14.log").write_text("c\n")
    (app / "old-log.log").write_text("d\n")
    (app / "evil-2025-12-15.log").symlink_to(tmp_path / "jwt_secret")
    (app / "inner-2025-12-15.log").symlink_to(app / "auth-2025-12-15.log")
    (app / "dir.log").mkdir()
    os.mkfifo(app / "pipe.log")
    server = tmp_path / "var-log"
    (server / "nginx").mkdir(parents=True)
    (server / "syslog").write_text("s1\ns2\n")
    (server / "nginx" / "access.log").write_text("GET /\n")
    (server / "secret.log").write_text("not whitelisted\n")
    (server / "auth.log").symlink_to(tmp_path / "jwt_secret")
    (server / "kern.log").symlink_to(server / "syslog")  # inside the root: allowed
    (tmp_path / "outside-mysql").mkdir()
    (tmp_path / "outside-mysql" / "error.log").write_text("TOP-SECRET\n")
    (server / "mysql").symlink_to(tmp_path / "outside-mysql")
    os.mkfifo(server / "dpkg.log")
    return app, server


HOSTILE = [
    "../jwt_secret",
    "..",
    "../../../../etc/passwd",
    "/etc/passwd",
    "/var/log/syslog",
    "logs/../jwt_secret",
    "auth-2025-12-15.log/../../jwt_secret",
    "..\\jwt_secret",
    "....//jwt_secret",
    "%2e%2e%2fjwt_secret",
    "%252e%252e%252fjwt_secret",
    "..%2fjwt_secret",
    "．．／jwt_secret",
    "~/.ssh/id_rsa",
    "file:///etc/passwd",
    "C:\\Windows\\win.ini",
    "nginx/../../jwt_secret",
    "nginx/../syslog",
    "./syslog",
    "syslog/",
    "nginx//access.log",
    " syslog",
    "syslog\n",
    "syslog\x00.log",
    "jwt_secret",
    ".hidden.log",
    "a" * 300 + ".log",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_refused_on_both_sources(dirs: tuple[Path, Path], name: str) -> None:
    app, server = dirs
    with pytest.raises(BadRequest):
        open_log("app", app, name)
    with pytest.raises(BadRequest):
        delete_app_log(app, name)
    with pytest.raises(Forbidden):
        open_log("server", server, name)
    assert (app.parent / "jwt_secret").exists()


@pytest.mark.parametrize(
    ("source", "name", "error"),
    [
        ("app", "", BadRequest),
        ("app", "evil-2025-12-15.log", Forbidden),  # symlink out of the directory
        ("app", "inner-2025-12-15.log", Forbidden),  # symlink inside it: never followed either
        ("app", "dir.log", Forbidden),
        ("app", "pipe.log", Forbidden),  # a FIFO: refused, and opening it does not block
        ("app", "missing-2025-12-15.log", NotFound),
        ("server", "", BadRequest),
        ("server", "secret.log", Forbidden),  # not whitelisted
        ("server", "auth.log", Forbidden),  # whitelisted, a symlink leading out
        ("server", "mysql/error.log", Forbidden),  # a directory symlink leading out
        ("server", "dpkg.log", Forbidden),  # a FIFO
        ("server", "fail2ban.log", NotFound),
    ],
)
def test_refusals(dirs: tuple[Path, Path], source: str, name: str, error: type[AppError]) -> None:
    app, server = dirs
    with pytest.raises(error):
        open_log(source, app if source == "app" else server, name)  # type: ignore[arg-type]


def test_served_files_are_read(dirs: tuple[Path, Path]) -> None:
    app, server = dirs
    for source, root, name, first in [
        ("app", app, "auth-2025-12-15.1.log", "b"),
        ("app", app, "old-log.log", "d"),
        ("server", server, "syslog", "s1"),
        ("server", server, "kern.log", "s1"),
        ("server", server, "nginx/access.log", "GET /"),
    ]:
        handle, status = open_log(source, root, name)  # type: ignore[arg-type]
        with handle:
            assert read_page(handle, status.st_size, page=1, page_size=1, keyword=None, reverse=False)[0] == [
                first
            ]


def test_listing(dirs: tuple[Path, Path]) -> None:
    app, server = dirs
    listing = list_files("app", app, category=None, day=None)
    names = [f["name"] for f in listing["files"]]
    assert names == ["auth-2025-12-15.log", "auth-2025-12-15.1.log", "proxy-2025-12-14.log", "old-log.log"]
    assert listing["total"] == 4
    first = listing["files"][0]
    assert first["category"] == "auth" and first["date"] == "2025-12-15" and first["size_human"] == "2 B"
    counts = {c["name"]: (c["label"], c["count"]) for c in listing["categories"]}
    assert counts["auth"] == ("认证日志", 2) and counts["proxy"][1] == 1 and counts["other"][1] == 1
    assert counts["error"] == ("错误日志", 0)
    day = list_files("app", app, category=None, day="2025-12-14")
    assert [f["name"] for f in day["files"]] == ["proxy-2025-12-14.log"]
    assert {c["name"]: c["count"] for c in day["categories"]}["auth"] == 0
    auth = list_files("app", app, category="auth", day=None)
    assert auth["total"] == 2 and len(auth["categories"]) == len(listing["categories"])
    served = list_files("server", server, category=None, day=None)
    assert [f["name"] for f in served["files"]] == ["syslog", "kern.log", "nginx/access.log"]
    assert all(f["date"] is None for f in served["files"])
    assert {c["name"]: c["count"] for c in served["categories"]} == {
        "ssh": 0,
        "system": 1,
        "kernel": 1,
        "fail2ban": 0,
        "nginx": 1,
        "mysql": 0,
    }
    assert list_files("app", app / "absent", category=None, day=None)["files"] == []


def test_delete(dirs: tuple[Path, Path]) -> None:
    app, _ = dirs
    delete_app_log(app, "proxy-2025-12-14.log")
    assert not (app / "proxy-2025-12-14.log").exists()
    with pytest.raises(NotFound):
        delete_app_log(app, "proxy-2025-12-14.log")
    with pytest.raises(Forbidden):
        delete_app_log(app, "evil-2025-12-15.log")
    assert (app.parent / "jwt_secret").exists()


def test_expired_files_are_deleted(tmp_path: Path) -> None:
    for name in (
        "auth-2025-12-01.log",
        "auth-2025-12-01.3.log",
        "error-2025-12-02.log",
        "main-2025-12-03.log",
    ):
        (tmp_path / name).write_text("x\n")
    (tmp_path / "notes-from-ops.log").write_text("kept: not a name the relay writes\n")
    deleted = delete_expired(tmp_path, days=1, today=date(2025, 12, 3))
    assert deleted == ["auth-2025-12-01.3.log", "auth-2025-12-01.log"]
    assert sorted(os.listdir(tmp_path)) == [
        "error-2025-12-02.log",
        "main-2025-12-03.log",
        "notes-from-ops.log",
    ]
    assert delete_expired(tmp_path / "absent", days=1, today=date(2025, 12, 3)) == []


async def test_janitor_reads_the_retention_each_time(tmp_path: Path) -> None:
    (tmp_path / "auth-2000-01-01.log").write_text("x\n")
    days = [36500]
    janitor = LogJanitor(tmp_path, lambda: days[0])
    assert await janitor.sweep() == []
    days[0] = 14
    assert await janitor.sweep() == ["auth-2000-01-01.log"]
    janitor.start()
    await asyncio.sleep(0)
    await janitor.close()
