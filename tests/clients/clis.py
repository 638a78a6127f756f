"""The real command-line clients, pinned in tests/clients/package-lock.json, run one turn at a time.

`make test` installs them with `npm ci` into tests/clients/node_modules (never at import time).
Each run gets a throwaway HOME holding the configuration the test writes, a clean environment
(none of the caller's vendor keys, proxies or config dirs), stdin closed, a timeout and its
output captured. Every setting that keeps a client off the internet is set: telemetry, error
reports, update checks, plugin marketplaces and usage statistics are off, so the only network
target left is the base URL on 127.0.0.1 (what the relay and the fake upstream saw is checked by
the tests).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

CLIENTS_DIR = Path(__file__).resolve().parent
NODE_MODULES = CLIENTS_DIR / "node_modules"
# CLI name -> npm package; the versions are the ones package.json pins.
PACKAGES = {
    "claude": "@anthropic-ai/claude-code",
    "codex": "@openai/codex",
    "gemini": "@google/gemini-cli",
}
TIMEOUT = 90.0  # seconds for one CLI run; a turn against the fake takes a few
# Where HOME-relative state goes; pointed into the throwaway home so nothing of the real one is read.
_XDG = ("XDG_CONFIG_HOME", ".config"), ("XDG_CACHE_HOME", ".cache"), ("XDG_DATA_HOME", ".local/share")
_PASSED_THROUGH = ("PATH", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")


def pinned_versions() -> dict[str, str]:
    dependencies = json.loads((CLIENTS_DIR / "package.json").read_text())["dependencies"]
    return {cli: dependencies[package] for cli, package in PACKAGES.items()}


def missing_reason() -> str | None:
    """Why the clients cannot run here (None: node and the pinned versions are installed)."""
    if shutil.which("node") is None:
        return "node is not installed: the real-client tests need Node.js 20+ and npm"
    for cli, version in pinned_versions().items():
        manifest = NODE_MODULES / PACKAGES[cli] / "package.json"
        if not manifest.exists() or not (NODE_MODULES / ".bin" / cli).exists():
            return f"{PACKAGES[cli]} is not installed in tests/clients/node_modules: run `make test`"
        installed = json.loads(manifest.read_text())["version"]
        if installed != version:
            return f"{PACKAGES[cli]} {installed} is installed but {version} is pinned: run `make test`"
    return None


@dataclass
class CliRun:
    """One finished (or killed) CLI run."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def describe(self) -> str:
        return (
            f"{' '.join(self.argv[:2])} exited {self.returncode} after {self.seconds:.1f}s\n"
            f"--- stdout\n{self.stdout[-4000:]}\n--- stderr\n{self.stderr[-4000:]}"
        )


class ClientHome:
    """A throwaway HOME (and a working directory beside it) for one client."""

    def __init__(self, root: Path) -> None:
        self.home = root / "home"
        self.workdir = root / "work"
        self.home.mkdir(parents=True, exist_ok=True)
        self.workdir.mkdir(parents=True, exist_ok=True)

    def env(self, extra: dict[str, str]) -> dict[str, str]:
        env = {name: os.environ[name] for name in _PASSED_THROUGH if name in os.environ}
        env.update(HOME=str(self.home), USERPROFILE=str(self.home), TERM="dumb", NO_COLOR="1", CI="1")
        env.update({name: str(self.home / sub) for name, sub in _XDG})
        # Loopback never goes through a proxy, whatever the machine's settings.
        env.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
        env.update(extra)
        return env

    def run(
        self,
        cli: str,
        args: list[str],
        extra_env: dict[str, str],
        timeout: float = TIMEOUT,
        stdin: str | None = None,
    ) -> CliRun:
        argv = [str(NODE_MODULES / ".bin" / cli), *args]
        started = time.monotonic()
        # Its own process group: a timeout kills the CLI with every helper it started.
        process = subprocess.Popen(
            argv,
            cwd=self.workdir,
            env=self.env(extra_env),
            stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            stdout, stderr = process.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            stderr += f"\n[killed after {timeout:.0f}s]"
        return CliRun(argv, process.returncode, stdout, stderr, time.monotonic() - started)


# -- Claude Code ------------------------------------------------------------------------------------


def claude_env(base_url: str, key: str) -> dict[str, str]:
    return {
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": key,
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }


def run_claude(home: ClientHome, base_url: str, key: str, prompt: str, model: str | None = None) -> CliRun:
    return home.run(
        "claude", ["-p", *(["--model", model] if model else []), prompt], claude_env(base_url, key)
    )


# -- Codex CLI --------------------------------------------------------------------------------------

CODEX_KEY_ENV = "RELAY_OPENAI_KEY"


# What keeps Codex off the network beyond the relay (see CLIENTS.md): no update check, analytics, plugins.
_CODEX_QUIET = """check_for_update_on_startup = false
[analytics]
enabled = false

[features]
plugins = false
remote_plugin = false
apps = false
in_app_updates = false
daemon_auto_start = false
"""


def _write_codex_home(home: ClientHome, top: str, tables: str = "") -> Path:
    """$CODEX_HOME/config.toml: `top` (top-level keys), the quiet settings, then `tables`."""
    codex_home = home.home / ".codex"
    codex_home.mkdir(exist_ok=True)
    (codex_home / "config.toml").write_text(f"{top}\n{_CODEX_QUIET}\n{tables}")
    return codex_home


def write_codex_config(
    home: ClientHome,
    base_url: str,
    *,
    name: str = "Relay",
    provider: str = "",
    top: str = "",
    model: str = "gpt-5-codex",
) -> Path:
    """$CODEX_HOME/config.toml selecting a provider named `name` at `base_url`; `provider` and `top` add
    lines to the provider's table and to the top level (WebSocket, compaction)."""
    provider_table = f"""[model_providers.relay]
name = "{name}"
base_url = "{base_url}"
wire_api = "responses"
env_key = "{CODEX_KEY_ENV}"
{provider}
"""
    return _write_codex_home(home, f'model = "{model}"\nmodel_provider = "relay"\n{top}', provider_table)


def write_builtin_openai_config(home: ClientHome, base_url: str) -> Path:
    """$CODEX_HOME/config.toml for Codex's built-in OpenAI provider pointed at the relay (no provider
    table: the set-up docs/clients.md shows first)."""
    return _write_codex_home(home, f'model = "gpt-5-codex"\nopenai_base_url = "{base_url}"')


def codex_login(home: ClientHome, key: str) -> CliRun:
    """`codex login --with-api-key`, the key on standard input (how a user stores the key the built-in
    provider sends)."""
    env = {"CODEX_HOME": str(home.home / ".codex"), "RUST_LOG": "error"}
    return home.run("codex", ["login", "--with-api-key"], env, stdin=key + "\n")


def run_codex(home: ClientHome, key: str, args: list[str]) -> CliRun:
    env = {"CODEX_HOME": str(home.home / ".codex"), CODEX_KEY_ENV: key, "RUST_LOG": "error"}
    return home.run("codex", ["exec", *args], env)


# -- Gemini CLI -------------------------------------------------------------------------------------

GEMINI_SETTINGS = {
    "security": {"auth": {"selectedType": "gemini-api-key"}},
    "privacy": {"usageStatisticsEnabled": False},
    "telemetry": {"enabled": False},
    "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False},
}


def run_gemini(home: ClientHome, base_url: str, key: str, prompt: str) -> CliRun:
    settings = home.home / ".gemini" / "settings.json"
    settings.parent.mkdir(exist_ok=True)
    settings.write_text(json.dumps(GEMINI_SETTINGS))
    env = {
        "GOOGLE_GEMINI_BASE_URL": base_url,
        "GEMINI_API_KEY": key,
        "GEMINI_CLI_TRUST_WORKSPACE": "true",
        "GEMINI_TELEMETRY_ENABLED": "false",
    }
    return home.run("gemini", ["-p", prompt], env)
