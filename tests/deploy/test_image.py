"""The image built and run, and the compose file read by Docker Compose itself, where they exist.

A machine without a Docker daemon (or without the compose plugin) skips these: there,
test_deploy_files.py checks the same files as data and test_nginx_stack.py runs the stack's
nginx and relays without containers.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from ..support import ADMIN_PASSWORD, Api
from .files import COMPOSE, ENV_EXAMPLE, REPO

MOCK_PORT = 9090  # the fake vendor, run inside the container next to the relay


def docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


def docker_daemon_or_skip() -> None:
    if shutil.which("docker") is None:
        pytest.skip("no docker CLI: the image is not built here")
    if docker("info").returncode != 0:
        pytest.skip("no Docker daemon (`docker info` fails): the image is not built here")


def compose_plugin_or_skip() -> None:
    if shutil.which("docker") is None or docker("compose", "version").returncode != 0:
        pytest.skip("no Docker Compose plugin: compose.yaml is checked as data only")


def test_compose_reads_the_file_and_demands_the_secrets() -> None:
    compose_plugin_or_skip()
    base = ["compose", "--project-directory", str(COMPOSE.parent), "-f", str(COMPOSE)]
    filled = docker(*base, "--env-file", str(ENV_EXAMPLE), "config", "--quiet")
    assert filled.returncode == 0, filled.stderr
    empty = COMPOSE.parent / f".env-empty-{uuid.uuid4().hex[:6]}"
    empty.write_text("")
    try:
        missing = docker(*base, "--env-file", str(empty), "config", "--quiet")
    finally:
        empty.unlink()
    assert missing.returncode != 0 and "AIPROXY_SECRET_KEY" in missing.stderr + missing.stdout


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    docker_daemon_or_skip()
    tag = f"aiproxy-test:{uuid.uuid4().hex[:8]}"
    built = docker("build", "--tag", tag, str(REPO), timeout=1800)
    assert built.returncode == 0, built.stderr[-3000:]
    try:
        yield tag
    finally:
        docker("rmi", "--force", tag)


@pytest.fixture
def container(image: str) -> Iterator[tuple[str, str]]:
    """A container of the image on SQLite, healthy by its own HEALTHCHECK: (id, base URL)."""
    started = docker(
        "run",
        "--detach",
        "--publish",
        "127.0.0.1::8080",
        "--env",
        f"AIPROXY_ADMIN_PASSWORD={ADMIN_PASSWORD}",
        image,
    )
    assert started.returncode == 0, started.stderr
    cid = started.stdout.strip()
    try:
        deadline = time.monotonic() + 180
        while (
            status := docker("inspect", "--format", "{{.State.Health.Status}}", cid).stdout.strip()
        ) != "healthy":
            assert status in ("starting", ""), (status, docker("logs", cid).stdout[-3000:])
            assert time.monotonic() < deadline, docker("logs", cid).stdout[-3000:]
            time.sleep(1)
        address = docker("port", cid, "8080/tcp").stdout.split()[0]
        yield cid, f"http://{address}"
    finally:
        docker("rm", "--force", cid)


def test_the_image_relays_a_request_as_an_unprivileged_user(container: tuple[str, str]) -> None:
    cid, base = container
    assert docker("exec", cid, "id", "-u").stdout.strip() != "0"
    assert httpx.get(f"{base}/ready", timeout=5).json()["status"] == "ready"
    assert httpx.get(f"{base}/", timeout=5).status_code == 200  # the console ships in the image
    assert (
        docker("exec", "--detach", cid, "aiproxy", "mock-upstream", "--port", str(MOCK_PORT)).returncode == 0
    )
    assert docker("exec", cid, "aiproxy", "config", "set", "captcha_enabled", "false").returncode == 0
    time.sleep(3)  # runtime configs are reloaded within about 2 s
    admin = Api(base)
    try:
        admin.login("admin", ADMIN_PASSWORD)
        admin.ok(
            "POST",
            "/api/admin/accounts",
            json={
                "name": "mock",
                "type": "claude-official",
                "api_key": "image-smoke",
                "base_url": f"http://127.0.0.1:{MOCK_PORT}",
            },
        )
        key = admin.ok("POST", "/api/api-keys", json={"name": "smoke"})["key"]
        answer = httpx.post(
            f"{base}/claude/v1/messages",
            json={
                "model": "claude-opus-4-8",
                "max_tokens": 16,
                "messages": [{"role": "user", "content": "hi"}],
            },
            headers={"x-api-key": key},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["type"] == "message"
    finally:
        admin.close()
