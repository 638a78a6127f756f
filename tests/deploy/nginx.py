"""deploy/nginx.conf run for real: rendered for relays on 127.0.0.1 and started as a test process.

The rendering changes only what cannot be the same outside compose, each replacement checked to
have happened exactly as often as expected (so a changed deploy/nginx.conf fails here instead of
being tested half-applied):

- `server relay1:8080` / `server relay2:8080` become the two relays' 127.0.0.1 ports;
- `listen 80` becomes a free port on 127.0.0.1;
- the log files go to the test's directory, and the temp paths with them (Debian's build keeps
  them under /var/lib/nginx);
- `user nginx` becomes the test's own user (there is no `nginx` user outside the image).
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ..support import free_port, unavailable
from .files import NGINX_CONF

TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def nginx_binary() -> str:
    """Path of `nginx`; skips (fails with AIPROXY_TEST_REQUIRE_SERVICES=1) when it is not installed."""
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
    )
    if found is None:
        unavailable("nginx is not installed (apt-get install nginx-light): deploy/nginx.conf cannot be run")
    assert found is not None
    return found


def render(conf: str, prefix: Path, port: int, relay_ports: tuple[int, int]) -> str:
    temp_paths = "".join(f"    {name}_temp_path {prefix / 'temp' / name};\n" for name in TEMP_PATHS)
    user = f"user {getpass.getuser()};" if os.geteuid() == 0 else ""
    replacements = (
        ("user nginx;", user, 1),
        ("server relay1:8080 ", f"server 127.0.0.1:{relay_ports[0]} ", 1),
        ("server relay2:8080 ", f"server 127.0.0.1:{relay_ports[1]} ", 1),
        ("listen 80;", f"listen 127.0.0.1:{port};", 1),
        ("/var/log/nginx/", f"{prefix / 'logs'}/", 2),
        ("http {\n", "http {\n" + temp_paths, 1),
    )
    for old, new, count in replacements:
        assert conf.count(old) == count, f"deploy/nginx.conf: expected {old!r} {count} time(s)"
        conf = conf.replace(old, new)
    return conf


@dataclass
class Nginx:
    """nginx with deploy/nginx.conf in front of two relays, in a directory of its own."""

    prefix: Path
    relay_ports: tuple[int, int]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def access_log(self) -> Path:
        return self.prefix / "logs" / "access.log"

    @property
    def error_log(self) -> Path:
        return self.prefix / "logs" / "error.log"

    def write_config(self) -> Path:
        for directory in ("logs", "temp"):
            (self.prefix / directory).mkdir(parents=True, exist_ok=True)
        path = self.prefix / "nginx.conf"
        path.write_text(render(NGINX_CONF.read_text(), self.prefix, self.port, self.relay_ports))
        return path

    def command(self, *extra: str) -> list[str]:
        return [
            nginx_binary(),
            "-p",
            str(self.prefix),
            "-c",
            str(self.write_config()),
            "-g",
            f"pid {self.prefix / 'nginx.pid'}; daemon off;",
            *extra,
        ]

    def check(self) -> subprocess.CompletedProcess[str]:
        """`nginx -t`: the rendered file parsed and its paths opened, nothing started."""
        return subprocess.run(self.command("-t"), capture_output=True, text=True, timeout=30)

    def start(self) -> None:
        command = self.command()  # writes the config, and makes the directories
        log = open(self.prefix / "nginx.out", "ab")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited early:\n{self.output()}")
            try:
                if httpx.get(f"{self.base_url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"nginx did not pass a request to a relay within 20 s:\n{self.output()}")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def output(self) -> str:
        parts = [self.prefix / "nginx.out", self.error_log]
        return "\n".join(p.read_text(errors="replace") for p in parts if p.exists())

    def access_lines(self) -> list[str]:
        return self.access_log.read_text().splitlines() if self.access_log.exists() else []
