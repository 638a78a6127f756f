"""The files the system-log viewer serves: the app's category logs and a whitelist of server logs.

Two sources, each a directory and a rule for the names it serves:

- `app`: regular files directly in `<data dir>/logs` named like `auth-2025-12-15.log` (any
  `[A-Za-z0-9][A-Za-z0-9._-]*.log` without `..`; names the app writes carry a category and date).
  Any other name is refused with 400 before the file system is touched; a symlink, directory or
  other non-regular file there is refused with 403 (the app never creates one).
- `server`: only the names of `SERVER_LOGS` under the server log root (`/var/log`); any other name
  is 403. A whitelisted path that resolves outside the root (a symlink) or is not a regular file
  is 403 too.

A file is opened once, without following a final symlink and without blocking on a FIFO, and read
through that descriptor only: what was checked is what is read. Reads never load a file whole:
paging counts newlines chunk by chunk, `tail` reads backwards from the end, downloads stream.
Lines longer than MAX_LINE_BYTES are cut (`…`), so one huge line cannot fill the memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, Literal

from ..background import BackgroundTask
from ..errors import BadRequest, Forbidden, NotFound
from .logs import CATEGORY_LABELS, FILE_NAME

log = logging.getLogger(__name__)

Source = Literal["app", "server"]

# The server logs an admin may read, with their categories (the only names `source=server` serves).
SERVER_LOGS: dict[str, str] = {
    "auth.log": "ssh",
    "auth.log.1": "ssh",
    "syslog": "system",
    "syslog.1": "system",
    "kern.log": "kernel",
    "kern.log.1": "kernel",
    "dpkg.log": "system",
    "fail2ban.log": "fail2ban",
    "nginx/access.log": "nginx",
    "nginx/error.log": "nginx",
    "mysql/error.log": "mysql",
}
SERVER_CATEGORY_LABELS: dict[str, str] = {
    "ssh": "SSH认证日志",
    "system": "系统日志",
    "kernel": "内核日志",
    "fail2ban": "Fail2ban日志",
    "nginx": "Nginx日志",
    "mysql": "MySQL日志",
}
OTHER_CATEGORY = "other"  # an app-dir file whose name is not one the app writes
OTHER_LABEL = "其他日志"

APP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,250}\.log$")
CHUNK = 1024 * 1024
MAX_LINE_BYTES = 16 * 1024
CUT_MARK = "…"

EMPTY_NAME = "文件名不能为空"
INVALID_NAME = "无效的日志文件"
FORBIDDEN = "不允许访问该日志文件"
UNREADABLE = "没有读取该日志文件的权限"
MISSING = "日志文件不存在"
SERVER_DELETE = "不允许删除服务器日志文件"


@dataclass(frozen=True, slots=True)
class LogFile:
    name: str
    size: int
    mod_time: datetime
    category: str
    date: str | None
    part: int = 0

    def view(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "size": self.size,
            "size_human": size_human(self.size),
            "mod_time": self.mod_time,
            "category": self.category,
            "date": self.date,
        }


def size_human(size: int) -> str:
    """`1234567` → `1.18 MB` (units of 1024)."""
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KB", "MB", "GB", "TB"):
        value /= 1024
        if value < 1024 or unit == "TB":
            break
    return f"{value:.2f} {unit}"


def mod_time(status: os.stat_result) -> datetime:
    return datetime.fromtimestamp(int(status.st_mtime), UTC)


# -- names and paths ----------------------------------------------------------------------------


def _app_path(root: Path, name: str) -> Path:
    if not name:
        raise BadRequest(EMPTY_NAME)
    if not APP_NAME.fullmatch(name) or ".." in name:
        raise BadRequest(INVALID_NAME)
    path = root / name
    try:
        status = path.lstat()
    except FileNotFoundError:
        raise NotFound(MISSING) from None
    if not stat.S_ISREG(status.st_mode):
        raise Forbidden(FORBIDDEN)  # a symlink (wherever it leads), a directory, a FIFO …
    return path


def _server_path(root: Path, name: str) -> Path:
    if not name:
        raise BadRequest(EMPTY_NAME)
    if name not in SERVER_LOGS:
        raise Forbidden(FORBIDDEN)
    real_root = root.resolve()
    real = (root / name).resolve()
    if not real.is_relative_to(real_root):
        raise Forbidden(FORBIDDEN)  # a symlink leading out of the server log root
    try:
        status = real.stat()
    except FileNotFoundError:
        raise NotFound(MISSING) from None
    except PermissionError:
        raise Forbidden(UNREADABLE) from None
    if not stat.S_ISREG(status.st_mode):
        raise Forbidden(FORBIDDEN)
    return real


def resolve(source: Source, root: Path, name: str) -> Path:
    """The path `name` stands for in `source`, or the error to answer (400, 403 or 404)."""
    return _app_path(root, name) if source == "app" else _server_path(root, name)


def open_log(source: Source, root: Path, name: str) -> tuple[BinaryIO, os.stat_result]:
    """The checked file, open for reading, with its status at opening."""
    path = resolve(source, root, name)
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise NotFound(MISSING) from None
    except PermissionError:
        raise Forbidden(UNREADABLE) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # became a symlink since it was checked
            raise Forbidden(FORBIDDEN) from None
        raise
    handle = os.fdopen(fd, "rb", buffering=0)
    status = os.fstat(fd)
    if not stat.S_ISREG(status.st_mode):
        handle.close()
        raise Forbidden(FORBIDDEN)
    return handle, status


# -- listing ------------------------------------------------------------------------------------


def _app_files(root: Path) -> list[LogFile]:
    files = []
    try:
        entries = list(os.scandir(root))
    except (FileNotFoundError, NotADirectoryError):
        return []  # nothing logged yet
    for entry in entries:
        if not APP_NAME.fullmatch(entry.name) or ".." in entry.name:
            continue
        try:
            status = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue  # deleted meanwhile
        if not stat.S_ISREG(status.st_mode):
            continue
        parsed = FILE_NAME.fullmatch(entry.name)
        if parsed is not None and parsed["category"] in CATEGORY_LABELS:
            category, day, part = parsed["category"], parsed["date"], int(parsed["part"] or 0)
        else:
            category, day, part = OTHER_CATEGORY, None, 0
        files.append(LogFile(entry.name, status.st_size, mod_time(status), category, day, part))
    order = list(CATEGORY_LABELS)
    files.sort(key=lambda f: (order.index(f.category) if f.category in order else len(order), f.part))
    files.sort(key=lambda f: f.date or "", reverse=True)  # newest day first, undated last
    return files


def _server_files(root: Path) -> list[LogFile]:
    files = []
    for name, category in SERVER_LOGS.items():
        try:
            path = _server_path(root, name)
            status = path.stat()
        except (NotFound, Forbidden, OSError):
            continue
        files.append(LogFile(name, status.st_size, mod_time(status), category, None))
    return files


def list_files(source: Source, root: Path, *, category: str | None, day: str | None) -> dict[str, Any]:
    """`files` (filtered by category and, for app logs, date), `categories` with how many files each
    has after the date filter, and `total`."""
    if source == "app":
        files = _app_files(root)
        if day:
            files = [f for f in files if f.date == day]
        labels = dict(CATEGORY_LABELS)
        if any(f.category == OTHER_CATEGORY for f in files):
            labels[OTHER_CATEGORY] = OTHER_LABEL
    else:
        files = _server_files(root)
        labels = SERVER_CATEGORY_LABELS
    counts = {name: 0 for name in labels}
    for f in files:
        counts[f.category] = counts.get(f.category, 0) + 1
    if category:
        files = [f for f in files if f.category == category]
    return {
        "files": [f.view() for f in files],
        "categories": [
            {"name": name, "label": label, "count": counts[name]} for name, label in labels.items()
        ],
        "total": len(files),
    }


# -- reading ------------------------------------------------------------------------------------


def _decode(line: bytes, cut: bool) -> str:
    text = line.decode("utf-8", "replace").removesuffix("\r")
    return text + CUT_MARK if cut else text


def _lines(handle: BinaryIO, start: int, end: int) -> Iterator[tuple[bytes, bool]]:
    """(line, was cut) for every line between byte offsets `start` (a line start) and `end`."""
    handle.seek(start)
    remaining = end - start
    kept = bytearray()
    cut = False
    while remaining > 0:
        chunk = handle.read(min(CHUNK, remaining))
        if not chunk:
            break
        remaining -= len(chunk)
        at = 0
        while True:
            newline = chunk.find(b"\n", at)
            stop = len(chunk) if newline < 0 else newline
            room = MAX_LINE_BYTES - len(kept)
            if stop - at > room:
                cut = True
            if room > 0:
                kept += chunk[at : at + min(room, stop - at)]
            if newline < 0:
                break
            yield bytes(kept), cut
            kept.clear()
            cut = False
            at = newline + 1
    if kept or cut:
        yield bytes(kept), cut


def _count_lines(handle: BinaryIO, end: int) -> int:
    """Lines in the first `end` bytes (a last line without a newline counts)."""
    handle.seek(0)
    count, remaining, last = 0, end, b"\n"
    while remaining > 0:
        chunk = handle.read(min(CHUNK, remaining))
        if not chunk:
            break
        remaining -= len(chunk)
        count += chunk.count(b"\n")
        last = chunk[-1:]
    return count + (last != b"\n")


def _offset_of_line(handle: BinaryIO, index: int, end: int) -> int:
    """The byte offset where line `index` (0-based) starts."""
    if index == 0:
        return 0
    handle.seek(0)
    seen, offset = 0, 0
    while offset < end:
        chunk = handle.read(min(CHUNK, end - offset))
        if not chunk:
            break
        found = chunk.count(b"\n")
        if seen + found >= index:
            at = -1
            for _ in range(index - seen):
                at = chunk.index(b"\n", at + 1)
            return offset + at + 1
        seen += found
        offset += len(chunk)
    return end


def read_page(
    handle: BinaryIO, size: int, *, page: int, page_size: int, keyword: str | None, reverse: bool
) -> tuple[list[str], int]:
    """(lines of the page, total lines or, with a keyword, total matching lines).

    Lines are numbered from the start of the file; with `reverse`, page 1 holds the last lines,
    newest first. The keyword matches case-insensitively.
    """
    if keyword:
        needle = keyword.encode().lower()
        total = sum(1 for line, _ in _lines(handle, 0, size) if needle in line.lower())
    else:
        total = _count_lines(handle, size)
    first = (page - 1) * page_size
    if first >= total:
        return [], total
    if reverse:
        first, last = max(0, total - first - page_size), total - first
    else:
        last = min(total, first + page_size)
    wanted: list[str] = []
    if keyword:
        index = 0
        for line, cut in _lines(handle, 0, size):
            if needle in line.lower():
                if first <= index < last:
                    wanted.append(_decode(line, cut))
                index += 1
                if index >= last:
                    break
    else:
        for line, cut in _lines(handle, _offset_of_line(handle, first, size), size):
            wanted.append(_decode(line, cut))
            if len(wanted) >= last - first:
                break
    if reverse:
        wanted.reverse()
    return wanted, total


def tail_lines(handle: BinaryIO, size: int, count: int) -> list[str]:
    """The last `count` lines, oldest first: read backwards, never more than `count` lines' worth."""
    end = size
    if end > 0:
        handle.seek(end - 1)
        if handle.read(1) == b"\n":
            end -= 1  # the final newline ends the last line; it does not start an empty one
    budget = count * (MAX_LINE_BYTES + 1)
    start, newlines = end, 0
    # `count` newlines bound `count` whole lines after the first (partial) piece.
    while start > 0 and newlines < count and end - start < budget:
        step = min(CHUNK, start, budget - (end - start))
        handle.seek(start - step)
        newlines += handle.read(step).count(b"\n")
        start -= step
    handle.seek(start)
    pieces = handle.read(end - start).split(b"\n") if size else []
    head = ""
    if start > 0:
        # The first piece begins inside a line: dropped, unless the budget ran out before
        # `count` lines were found, when it is the end of a very long line.
        first = pieces.pop(0)
        if newlines < count:
            head = CUT_MARK + _decode(first[-MAX_LINE_BYTES:], False)
    lines = [_decode(p[:MAX_LINE_BYTES], len(p) > MAX_LINE_BYTES) for p in pieces]
    if head:
        lines.insert(0, head)
    return lines[-count:]


def stream(handle: BinaryIO, size: int) -> Iterator[bytes]:
    """The first `size` bytes (the size when the download began), a chunk at a time."""
    handle.seek(0)
    remaining = size
    while remaining > 0:
        chunk = handle.read(min(CHUNK, remaining))
        if not chunk:
            break
        remaining -= len(chunk)
        yield chunk


# -- deleting -----------------------------------------------------------------------------------


def delete_app_log(root: Path, name: str) -> None:
    """Delete one app log file; the writer starts the file again on its next line."""
    path = _app_path(root, name)
    try:
        path.unlink()
    except FileNotFoundError:
        raise NotFound(MISSING) from None


def delete_expired(root: Path, *, days: int, today: date) -> list[str]:
    """Delete the app log files dated more than `days` days before `today` (only names the app
    writes: other files in the directory are the operator's); the names deleted."""
    oldest_kept = (today - timedelta(days=days)).isoformat()
    deleted = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(root):
            parsed = FILE_NAME.fullmatch(entry.name)
            if parsed is None or parsed["date"] >= oldest_kept or entry.is_dir(follow_symlinks=False):
                continue
            with contextlib.suppress(FileNotFoundError):  # another worker was first
                os.unlink(entry.path)
                deleted.append(entry.name)
    return sorted(deleted)


class LogJanitor:
    """Deletes expired app log files at start and then hourly (each worker does; deleting twice
    is harmless). `days` reads the runtime config `log_retention_days` each time."""

    INTERVAL = 3600.0

    def __init__(self, root: Path, days: Callable[[], int]) -> None:
        self.root = root
        self.days = days
        self._loop = BackgroundTask("log-file-retention", self._run)

    def start(self) -> None:
        self._loop.start()

    async def close(self) -> None:
        await self._loop.close()

    async def sweep(self) -> list[str]:
        today = datetime.now(UTC).date()
        deleted = await asyncio.to_thread(delete_expired, self.root, days=int(self.days()), today=today)
        if deleted:
            log.info("deleted %d expired log files: %s", len(deleted), ", ".join(deleted))
        return deleted

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:  # a full disk or a permission change must not end the job
                log.exception("log file retention failed")
            await asyncio.sleep(self.INTERVAL)
