"""App log files by category, written through the standard `logging` machinery.

Every record still reaches the console as before. A second root handler, `CategoryFileHandler`,
writes it to `<data dir>/logs/<category>-YYYY-MM-DD.log` (the category from `CATEGORY_OF_LOGGER`),
and a second copy of every WARNING and above to `error-…`.

Lines are written where they are logged, like the console's: a line costs a few microseconds (one
`write()` into the page cache), and nothing is lost when the process ends. A writer thread behind
a queue was tried and dropped: uvicorn ends a worker on SIGTERM by re-raising the signal, which
kills the process before a queue is drained, so the last lines of every shutdown were lost.

Files are never renamed, so several worker processes can share them: each line is one `write()`
on a file opened with O_APPEND. A day's file that reaches `log_file_max_mb` is continued in
`<category>-YYYY-MM-DD.1.log`, `.2.log`, …; a process always appends to the highest part of the day
and moves on when that part is full (two workers moving at once land in the same new part). Dates
and times are UTC, like every time the API returns.

The whole configuration is one `dictConfig` dict (`logging_config`): uvicorn applies it in every
worker process it spawns, which a configuration made by hand in the parent would not reach.
"""

from __future__ import annotations

import logging
import os
import re
import time
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import orjson

from ..config import Settings
from ..security.masking import mask_secret_fields, mask_text
from .context import request_id

LOG_DIR_NAME = "logs"
ERROR_CATEGORY = "error"
DEFAULT_CATEGORY = "main"
# The console format from before the log files existed (stderr).
CONSOLE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
TEXT_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"

# Category names and their labels, in the order the viewer lists them.
CATEGORY_LABELS: dict[str, str] = {
    "auth": "认证日志",
    "http": "HTTP日志",
    "proxy": "代理转发日志",
    "scheduler": "调度器日志",
    "oauth": "OAuth日志",
    "billing": "计费日志",
    "client_filter": "客户端过滤日志",
    "operation": "操作日志",
    "sync": "数据同步日志",
    "middleware": "中间件日志",
    "main": "主程序日志",
    "error": "错误日志",
}

# Logger name → category: the longest matching prefix (whole dotted parts) wins; anything else
# is `main`. The access lines come from observe/access_log.py.
CATEGORY_OF_LOGGER: dict[str, str] = {
    "aiproxy.api.auth": "auth",
    "aiproxy.security": "auth",
    "aiproxy.store.users": "auth",
    "aiproxy.access.http": "http",
    "aiproxy.api.errors": "http",
    "uvicorn": "http",
    "aiproxy.access.proxy": "proxy",
    "aiproxy.gateway": "proxy",
    "aiproxy.gateway.scheduler": "scheduler",
    "aiproxy.gateway.pool": "scheduler",
    "aiproxy.gateway.health": "scheduler",
    "aiproxy.gateway.probe": "scheduler",
    "aiproxy.gateway.live_state": "scheduler",
    "aiproxy.oauth": "oauth",
    "aiproxy.gateway.tokens": "oauth",
    "aiproxy.api.admin.oauth": "oauth",
    "aiproxy.billing": "billing",
    "aiproxy.gateway.quotas": "billing",
    "aiproxy.gateway.client_filter": "client_filter",
    "aiproxy.api.admin.client_filter": "client_filter",
    "aiproxy.api.audit": "operation",
    "aiproxy.api.admin.operation_logs": "operation",
    "aiproxy.runtime_configs": "sync",
    "aiproxy.runtime_caches": "sync",
    "aiproxy.api.admin.configs": "sync",
    "aiproxy.store.state": "sync",
    "aiproxy.api.request_guard": "middleware",
    "aiproxy.serving": "middleware",
}

# `<category>-YYYY-MM-DD.log` or, once the day's first file is full, `<category>-YYYY-MM-DD.<n>.log`.
FILE_NAME = re.compile(
    r"^(?P<category>[a-z_]+)-(?P<date>\d{4}-\d{2}-\d{2})(?:\.(?P<part>[1-9]\d{0,5}))?\.log$"
)
FILE_MODE = 0o640


def log_dir(settings: Settings) -> Path:
    return settings.data_dir / LOG_DIR_NAME


def file_name(category: str, day: str, part: int = 0) -> str:
    return f"{category}-{day}.log" if part == 0 else f"{category}-{day}.{part}.log"


@lru_cache(maxsize=1024)
def category_of(logger_name: str) -> str:
    """The category of a logger, from CATEGORY_OF_LOGGER (cached: a process has few loggers)."""
    name = logger_name
    while name:
        category = CATEGORY_OF_LOGGER.get(name)
        if category is not None:
            return category
        name = name.rpartition(".")[0]
    return DEFAULT_CATEGORY


def mask(text: str) -> str:
    """Credential shapes (`sk-…`, bearer tokens, JWTs) and secret-named fields (`password=…`)."""
    return mask_secret_fields(mask_text(text))


class RequestIdFilter(logging.Filter):
    """Stamps the record with the proxy request being handled (observe/context.py), read in the
    context that logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class ConsoleFormatter(logging.Formatter):
    """The console's format, masked like the files."""

    def format(self, record: logging.LogRecord) -> str:
        return mask(super().format(record))


class TextFormatter(logging.Formatter):
    """`2025-12-15 10:00:01 [INFO] aiproxy.api.auth: message request_id=…` (UTC), then any traceback.

    Line breaks inside a message are written as `\\n`, so one record is one line and a value that
    reached a message (a user name, a path) cannot forge a line of its own.
    """

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:  # one strftime per second, not per line
            self._second, self._stamp = second, time.strftime(TEXT_DATE_FORMAT, time.gmtime(second))
        return self._stamp

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage().replace("\r", "\\r").replace("\n", "\\n")
        line = f"{self.formatTime(record)} [{record.levelname}] {record.name}: {message}"
        rid = getattr(record, "request_id", "")
        if rid:
            line += f" request_id={rid}"
        detail = _detail(self, record)
        return mask(f"{line}\n{detail}" if detail else line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (RFC 3339 UTC), level, logger, message, and request_id and
    exception when there are any."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        entry: dict[str, str] = {
            "time": stamp.replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": mask(record.getMessage()),
        }
        rid = getattr(record, "request_id", "")
        if rid:
            entry["request_id"] = rid
        detail = _detail(self, record)
        if detail:
            entry["exception"] = mask(detail)
        return orjson.dumps(entry).decode()


def _detail(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    """The record's traceback and stack, as text."""
    parts = []
    if record.exc_info and not record.exc_text:
        record.exc_text = formatter.formatException(record.exc_info)
    if record.exc_text:
        parts.append(record.exc_text)
    if record.stack_info:
        parts.append(formatter.formatStack(record.stack_info))
    return "\n".join(parts)


class _DailyFile:
    """The file one category is appended to today: reopened on a new day, after a deletion, and
    continued in the next part when full. Used under the handler's lock."""

    def __init__(self, directory: Path, category: str, max_bytes: int) -> None:
        self.directory = directory
        self.category = category
        self.max_bytes = max_bytes
        self.day = ""
        self.part = 0
        self.fd = -1

    def write(self, data: bytes, day: str) -> None:
        if self.fd < 0 or day != self.day:
            self._open(day, first_part=0)
        else:
            status = os.fstat(self.fd)
            if status.st_nlink == 0:  # deleted (through the viewer): start the file again
                self._open(day, first_part=self.part)
            elif status.st_size > 0 and status.st_size + len(data) > self.max_bytes:
                self._open(day, first_part=self.part + 1)
        os.write(self.fd, data)  # one write on an O_APPEND file: lines of several workers never mix

    def _open(self, day: str, *, first_part: int) -> None:
        """Open the highest part of `day` from `first_part` on, or the next one when that is full."""
        self.close()
        self.directory.mkdir(parents=True, exist_ok=True)
        part = first_part
        # Another worker may already have moved on to later parts: join it there.
        while (self.directory / file_name(self.category, day, part + 1)).exists():
            part += 1
        try:
            if (self.directory / file_name(self.category, day, part)).stat().st_size >= self.max_bytes:
                part += 1
        except FileNotFoundError:
            pass
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        self.fd = os.open(self.directory / file_name(self.category, day, part), flags, FILE_MODE)
        self.day, self.part = day, part

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class CategoryFileHandler(logging.Handler):
    """Writes each record to its category's file of the day, and WARNING and above to `error` too."""

    def __init__(self, directory: str | Path, max_bytes: int) -> None:
        super().__init__()
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._files: dict[str, _DailyFile] = {}
        self._day_number = -1
        self._day_text = ""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (self.format(record) + "\n").encode("utf-8", "replace")
            day = self._day(record.created)
            self._file(category_of(record.name)).write(data, day)
            if record.levelno >= logging.WARNING:
                self._file(ERROR_CATEGORY).write(data, day)
        except Exception:
            self.handleError(record)

    def _day(self, created: float) -> str:
        """The UTC date of a record, computed once a day."""
        number = int(created // 86400)
        if number != self._day_number:
            self._day_number, self._day_text = number, time.strftime("%Y-%m-%d", time.gmtime(created))
        return self._day_text

    def _file(self, category: str) -> _DailyFile:
        daily = self._files.get(category)
        if daily is None:
            daily = self._files[category] = _DailyFile(self.directory, category, self.max_bytes)
        return daily

    def close(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            for daily in self._files.values():
                daily.close()
            self._files.clear()
        super().close()


def category_files(
    directory: str, log_format: Literal["text", "json"], max_bytes: int
) -> CategoryFileHandler:
    """The handler `logging_config` names (a dictConfig factory)."""
    handler = CategoryFileHandler(directory, max_bytes)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    return handler


def logging_config(settings: Settings) -> dict[str, Any]:
    """The process's logging: the console as before, plus the category files."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"console": {"()": f"{__name__}.ConsoleFormatter", "format": CONSOLE_FORMAT}},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "console",
                "stream": "ext://sys.stderr",
            },
            "files": {
                "()": f"{__name__}.category_files",
                "directory": str(log_dir(settings).resolve()),
                "log_format": settings.log_format,
                "max_bytes": settings.log_file_max_mb * 1024 * 1024,
            },
        },
        "root": {"level": settings.log_level.upper(), "handlers": ["console", "files"]},
        "loggers": {
            # One line per request goes to the files only: the console stays as quiet as before.
            "aiproxy.access": {"handlers": ["files"], "propagate": False},
            "alembic": {"level": "WARNING"},  # one INFO line per migration otherwise
            # uvicorn's own loggers reach the root handlers (its default config stops them).
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
        },
    }


def configure_logging(settings: Settings) -> dict[str, Any]:
    """Apply `logging_config` to this process; the same dict is handed to uvicorn for its workers."""
    import logging.config

    config = logging_config(settings)
    logging.config.dictConfig(config)
    return config
