"""App log files: categories, formats, request ids, masking, day and size rotation, several writers."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from aiproxy.observe.context import request_id
from aiproxy.observe.logs import FILE_NAME, category_files, category_of
from aiproxy.security.masking import mask_secret_fields, mask_text

SK_KEY = "sk-" + "0123456789abcdef" * 4
ANT_KEY = "sk-ant-api03-" + "A" * 40
Attach = Callable[..., logging.Logger]


@pytest.fixture
def log_into(tmp_path: Path) -> Iterator[Attach]:
    """A logger of its own writing through the file handler (the test process's root stays as is)."""
    created: list[tuple[logging.Logger, logging.Handler]] = []

    def attach(name: str, log_format: str = "text", max_bytes: int = 1 << 20) -> logging.Logger:
        logger = logging.getLogger(name)
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        handler = category_files(str(tmp_path / "logs"), log_format, max_bytes)  # type: ignore[arg-type]
        logger.addHandler(handler)
        created.append((logger, handler))
        return logger

    yield attach
    for logger, handler in created:
        logger.removeHandler(handler)
        handler.close()


def _today() -> str:
    return time.strftime("%Y-%m-%d", time.gmtime())


def _read(tmp_path: Path, category: str, part: int = 0) -> list[str]:
    suffix = f".{part}" if part else ""
    return (tmp_path / "logs" / f"{category}-{_today()}{suffix}.log").read_text().splitlines()


@pytest.mark.parametrize(
    ("logger", "category"),
    [
        ("aiproxy.api.auth", "auth"),
        ("aiproxy.security.tokens", "auth"),
        ("uvicorn.access", "http"),
        ("uvicorn.error", "http"),
        ("aiproxy.access.http", "http"),
        ("aiproxy.access.proxy", "proxy"),
        ("aiproxy.gateway.pipeline", "proxy"),
        ("aiproxy.gateway.relay", "proxy"),
        ("aiproxy.gateway.scheduler", "scheduler"),
        ("aiproxy.gateway.pool", "scheduler"),
        ("aiproxy.gateway.health", "scheduler"),
        ("aiproxy.gateway.tokens", "oauth"),
        ("aiproxy.oauth.grants", "oauth"),
        ("aiproxy.billing.recorder", "billing"),
        ("aiproxy.gateway.client_filter", "client_filter"),
        ("aiproxy.api.audit", "operation"),
        ("aiproxy.runtime_configs", "sync"),
        ("aiproxy.store.state.redis", "sync"),
        ("aiproxy.serving", "middleware"),
        ("aiproxy", "main"),
        ("aiproxy.store.accounts", "main"),
        ("aiproxy.gatewayish", "main"),  # whole dotted parts only
        ("sqlalchemy.engine", "main"),
    ],
)
def test_category_of_logger(logger: str, category: str) -> None:
    assert category_of(logger) == category


def test_category_files_and_error_copy(log_into: Attach, tmp_path: Path) -> None:
    log_into("aiproxy.api.auth").info("login: admin")
    log_into("aiproxy.billing.recorder").warning("write failed: %s", "disk full")
    auth = _read(tmp_path, "auth")
    assert len(auth) == 1
    assert auth[0].endswith(" [INFO] aiproxy.api.auth: login: admin")
    assert auth[0].startswith(_today() + " ")  # UTC, like the file's date
    billing = _read(tmp_path, "billing")
    assert billing == _read(tmp_path, "error")
    assert billing[0].endswith("[WARNING] aiproxy.billing.recorder: write failed: disk full")


def test_request_id_on_lines_of_a_request(log_into: Attach, tmp_path: Path) -> None:
    log = log_into("aiproxy.gateway.pipeline")
    log.info("outside")
    token = request_id.set("ab12cd34ef560000000000a1")
    try:
        log.info("inside")
    finally:
        request_id.reset(token)
    outside, inside = _read(tmp_path, "proxy")
    assert "request_id" not in outside
    assert inside.endswith("inside request_id=ab12cd34ef560000000000a1")


def test_json_lines(log_into: Attach, tmp_path: Path) -> None:
    log = log_into("aiproxy.gateway.relay", "json")
    token = request_id.set("rid-1")
    try:
        log.error("upstream said %s", "no")
    finally:
        request_id.reset(token)
    for line in (_read(tmp_path, "proxy")[0], _read(tmp_path, "error")[0]):
        entry = json.loads(line)
        assert entry["level"] == "ERROR"
        assert entry["logger"] == "aiproxy.gateway.relay"
        assert entry["message"] == "upstream said no"
        assert entry["request_id"] == "rid-1"
        assert entry["time"].endswith("Z") and entry["time"].startswith(_today())


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_secrets_are_masked_in_messages_and_tracebacks(
    log_into: Attach, tmp_path: Path, log_format: str
) -> None:
    log = log_into("aiproxy.api.auth", log_format)
    log.info("key %s and password=%s", SK_KEY, "hunter2")
    log.info('body {"password": "hunter2", "api_key": "plain-key"} token %s', ANT_KEY)
    try:
        raise ValueError(f"refused {SK_KEY} with password=hunter2")
    except ValueError:
        log.exception("call failed")
    text = (tmp_path / "logs" / f"auth-{_today()}.log").read_text()
    assert SK_KEY[3:] not in text
    assert "A" * 40 not in text
    assert "hunter2" not in text and "plain-key" not in text
    assert "sk-***" in text and "password=***" in text
    assert "Traceback" in text


def test_a_message_cannot_forge_a_line(log_into: Attach, tmp_path: Path) -> None:
    log_into("aiproxy.api.auth").warning("login failed for %r", "x\n2025-01-01 00:00:00 [INFO] forged")
    assert len(_read(tmp_path, "auth")) == 1


def _part(name: str) -> int:
    parsed = FILE_NAME.fullmatch(name)
    assert parsed is not None, name
    return int(parsed["part"] or 0)


def test_size_rotation_keeps_every_line(log_into: Attach, tmp_path: Path) -> None:
    log = log_into("aiproxy.gateway.relay", "text", 2000)
    for n in range(100):
        log.info("line %03d %s", n, "x" * 40)
    names = sorted(os.listdir(tmp_path / "logs"), key=_part)
    assert names[0] == f"proxy-{_today()}.log" and names[1] == f"proxy-{_today()}.1.log"
    lines = [line for name in names for line in (tmp_path / "logs" / name).read_text().splitlines()]
    assert [int(line.split("line ")[1][:3]) for line in lines] == list(range(100))
    for name in names:
        assert (tmp_path / "logs" / name).stat().st_size <= 2000


def test_new_day_new_file(log_into: Attach, tmp_path: Path) -> None:
    log = log_into("aiproxy.billing")
    record = log.makeRecord(log.name, logging.INFO, "x", 1, "yesterday's line", None, None)
    record.created -= 86400
    log.handle(record)
    log.info("today's line")
    yesterday = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 86400))
    assert "yesterday's line" in (tmp_path / "logs" / f"billing-{yesterday}.log").read_text()
    assert _read(tmp_path, "billing")[0].endswith("today's line")


def test_deleted_file_is_started_again(log_into: Attach, tmp_path: Path) -> None:
    log = log_into("aiproxy.billing")
    log.info("first")
    (tmp_path / "logs" / f"billing-{_today()}.log").unlink()
    log.info("second")
    assert len(_read(tmp_path, "billing")) == 1


def _writer(directory: str, worker: int, count: int) -> None:
    logger = logging.getLogger(f"aiproxy.gateway.worker{worker}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(category_files(directory, "text", 8000))
    for n in range(count):
        logger.info("worker %d line %05d %s", worker, n, "y" * (n % 50))


def test_several_processes_share_the_files_without_losing_a_line(tmp_path: Path) -> None:
    """Workers append to the same files and move on to new parts at the same time."""
    directory = str(tmp_path / "logs")
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(directory, w, 1500)) for w in range(3)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(60)
        assert process.exitcode == 0
    seen: list[tuple[int, int]] = []
    for name in os.listdir(directory):
        assert FILE_NAME.fullmatch(name), name
        for line in (tmp_path / "logs" / name).read_text().splitlines():
            head, _, rest = line.partition(": worker ")
            assert head.endswith("[INFO] aiproxy.gateway.worker" + rest[0]), line
            worker, _, number = rest.split()[:3]
            seen.append((int(worker), int(number)))
    assert sorted(seen) == [(w, n) for w in range(3) for n in range(1500)]
    assert len(os.listdir(directory)) > 5  # the size rotation really happened


def test_dict_config_keeps_the_console_and_adds_the_files(tmp_path: Path) -> None:
    """What `aiproxy serve` (and uvicorn, in each worker) applies: the console format as before,
    uvicorn's own loggers in the files, the access lines in the files only."""
    script = """
import logging
from aiproxy.config import load_settings
from aiproxy.observe.logs import configure_logging
configure_logging(load_settings())
logging.getLogger("aiproxy.app").info("ready")
logging.getLogger("uvicorn.error").info("Started server process")
logging.getLogger("aiproxy.access.http").info("GET /api/profile 200 1.0ms 127.0.0.1")
logging.getLogger("aiproxy.api.auth").debug("not at info level")
"""
    env = {**os.environ, "AIPROXY_DATA_DIR": str(tmp_path), "AIPROXY_LOG_LEVEL": "info"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    console = done.stderr.splitlines()
    assert len(console) == 2
    assert console[0].endswith(" INFO aiproxy.app: ready")
    assert "GET /api/profile" not in done.stderr
    assert _read(tmp_path, "main")[0].endswith("[INFO] aiproxy.app: ready")
    assert _read(tmp_path, "http")[0].endswith("[INFO] uvicorn.error: Started server process")
    assert _read(tmp_path, "http")[1].endswith("GET /api/profile 200 1.0ms 127.0.0.1")
    assert not (tmp_path / "logs" / f"auth-{_today()}.log").exists()


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("login password=hunter2 ok", "login password=*** ok"),
        ('{"password": "hunter2", "user": "x"}', '{"password": "***", "user": "x"}'),
        ("Authorization: Bearer abc.def", "Authorization: ***"),
        ("access_token=xyz&refresh_token=qq", "access_token=***&refresh_token=***"),
        ("{'api_key': 'k1'}", "{'api_key': '***'}"),
        ("client_secret: s3cr3t", "client_secret: ***"),
        ("max_tokens=100 token_count=5 tokens: 5", "max_tokens=100 token_count=5 tokens: 5"),
        ("password=***", "password=***"),
    ],
)
def test_mask_secret_fields(text: str, masked: str) -> None:
    assert mask_secret_fields(text) == masked


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (f"key {SK_KEY} end", "key sk-*** end"),
        (f"{ANT_KEY}", "sk-ant-api03-***"),
        ("AIza" + "b" * 35, "AIza***"),
        ("ya29." + "c" * 40, "ya29.***"),
        ("AKIA" + "D" * 16, "AKIA***"),
        ("ASIA" + "E" * 16, "ASIA***"),
        ("BEARER " + "f" * 30, "BEARER ***"),
        ("eyJ" + "g" * 30, "eyJ***"),
        ("AWS_SECRET_ACCESS_KEY=" + "h" * 40, "AWS_SECRET_ACCESS_KEY=***"),
        ("sessionKey: " + "i" * 40, "sessionKey: ***"),
        ("session_key='" + "j" * 40, "session_key='***"),
        ("nothing secret here, 200 OK", "nothing secret here, 200 OK"),
    ],
)
def test_every_credential_shape_passes_the_quick_check(text: str, masked: str) -> None:
    """mask_text skips text without any shape's hint: each shape must still be masked."""
    assert mask_text(text) == masked


def test_mask_secret_fields_outside_ascii() -> None:
    assert mask_secret_fields("PASSWORD=Hunter2 für Api-Key: XyZ") == "PASSWORD=*** für Api-Key: ***"
