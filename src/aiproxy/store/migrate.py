"""Apply Alembic migrations programmatically (at start and from `aiproxy migrate`)."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation would choke on '%' in passwords.
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


@contextmanager
def _migration_lock(lock_dir: Path) -> Iterator[None]:
    """Serialise migrations between processes started together on one host (workers)."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / ".migrate.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def upgrade_to_head(database_url: str, lock_dir: Path) -> None:
    """Blocking; call from a thread when an event loop is running."""
    with _migration_lock(lock_dir):
        command.upgrade(alembic_config(database_url), "head")
