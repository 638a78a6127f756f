"""Process settings, read from the environment (and an optional `.env`) in one place.

Every other module receives a `Settings` instance; nothing else reads `os.environ`.
Secrets the operator did not provide are generated once into the data dir (mode 0600)
so restarts keep issued tokens and encrypted credentials valid.
"""

from __future__ import annotations

import os
import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

JWT_SECRET_FILE = "jwt_secret"
SECRET_KEY_FILE = "secret_key"


class Settings(BaseSettings):
    """Settings with the fixed `AIPROXY_*` names documented in docs/operator-guide.md."""

    model_config = SettingsConfigDict(env_prefix="AIPROXY_", env_file=".env", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    data_dir: Path = Path("./data")
    database_url: str | None = None
    redis_url: str | None = None
    # Namespace for every Redis key, so several relays (or test runs) can share one Redis.
    redis_prefix: str = "aiproxy:"
    # Seconds for a Redis connect, each reply and a pooled-connection wait. Commands answer in well
    # under a millisecond, so this only fires when Redis is down or stalled, and it caps what that
    # costs a request (after a failure, calls fail fast for a second: see docs, "Redis outage").
    redis_timeout: float = Field(default=0.5, gt=0, le=30)
    admin_password: str | None = None
    jwt_secret: str | None = None
    secret_key: str | None = None
    log_level: str = "info"
    # App log files in <data dir>/logs/<category>-YYYY-MM-DD.log: one line per record as text, or
    # one JSON object per line; a day's file is rotated when it passes this size.
    log_format: Literal["text", "json"] = "text"
    log_file_max_mb: int = Field(default=100, ge=1, le=100_000)
    # Root of the whitelisted server logs the system-log viewer serves (`source=server`).
    server_log_dir: Path = Path("/var/log")
    # Bearer token `GET /metrics` requires when set (Prometheus' `authorization` config); unset =
    # open, for a scraper on a private network.
    metrics_token: str | None = None
    # An access line per proxy request in the `proxy` log file (at `info`). Off by default: each
    # costs ~15 µs on the hot path, and the request log already has a richer row per request.
    proxy_access_log: bool = False
    workers: int = Field(default=1, ge=1)
    # Seconds between each worker's look at the config and reload versions in the database: how
    # soon a config change, or a sync of every runtime cache, reaches the other workers and instances.
    config_poll_interval: float = Field(default=2.0, ge=0.05, le=60)
    # Seconds between usage-recorder writes; larger batches cost the database less.
    recorder_flush_interval: float = Field(default=0.25, gt=0, le=60)
    # Write-ahead journal of recorded usage in <data dir>/journal/: a killed process loses no rows.
    journal: bool = True
    # fsync the journal once per recorder turn (in a thread): a power failure loses about one turn.
    journal_fsync: bool = True
    # Trust X-Forwarded-For / X-Real-IP only when a reverse proxy in front sets them.
    trust_proxy_headers: bool = False
    # Connection limits (see serving.py): a slow or hostile client must not hold the relay.
    max_header_bytes: int = Field(default=64 * 1024, ge=4096, le=16 * 1024 * 1024)
    header_timeout: float = Field(default=30.0, gt=0, le=3600)
    body_idle_timeout: float = Field(default=60.0, gt=0, le=3600)
    keepalive_timeout: float = Field(default=15.0, gt=0, le=3600)
    max_connections: int = Field(default=10_000, ge=64)
    # OAuth onboarding of subscription accounts (docs/oauth-accounts.md). Every vendor URL is a setting
    # so operators behind a mirror, and the tests (the fake vendor in `aiproxy mock-upstream`), can
    # point them elsewhere. Claude: the browser authorize page, the token endpoint (refresh grants
    # fail on the old console.anthropic.com host), and the claude.ai root used by the cookie flow.
    oauth_claude_authorize_url: str = "https://claude.ai/oauth/authorize"
    oauth_claude_token_url: str = "https://platform.claude.com/v1/oauth/token"
    oauth_claude_web_url: str = "https://claude.ai"
    # OpenAI (Codex / ChatGPT subscription): authorize page and token endpoint.
    oauth_openai_authorize_url: str = "https://auth.openai.com/oauth/authorize"
    oauth_openai_token_url: str = "https://auth.openai.com/oauth/token"
    # Google (Gemini CLI client): authorize page and token endpoint.
    oauth_gemini_authorize_url: str = "https://accounts.google.com/o/oauth2/v2/auth"
    oauth_gemini_token_url: str = "https://oauth2.googleapis.com/token"
    # Code Assist API root: Gemini OAuth accounts find (or are given) their project there.
    gemini_code_assist_url: str = "https://cloudcode-pa.googleapis.com"
    # OAuth access tokens are refreshed this many seconds before they expire, by a background
    # sweep every `oauth_refresh_interval` seconds (and on demand after an upstream 401).
    oauth_refresh_margin: float = Field(default=300.0, ge=10, le=86400)
    oauth_refresh_interval: float = Field(default=60.0, gt=0, le=3600)

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'aiproxy.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    @cached_property
    def resolved_jwt_secret(self) -> str:
        return self.jwt_secret or self._persisted_secret(JWT_SECRET_FILE)

    @cached_property
    def resolved_secret_key(self) -> str:
        return self.secret_key or self._persisted_secret(SECRET_KEY_FILE)

    @property
    def journal_dir(self) -> Path:
        return self.data_dir / "journal"

    def ensure_data_dir(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return self.data_dir

    def _persisted_secret(self, name: str) -> str:
        """Read a generated secret from the data dir, creating it (0600) on first use."""
        path = self.ensure_data_dir() / name
        if path.exists():
            value = path.read_text().strip()
            if value:
                return value
        value = secrets.token_urlsafe(48)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(value)
        os.chmod(path, 0o600)
        return value


def load_settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]
