"""The long-lived objects one relay instance shares between requests (on `app.state.services`)."""

from __future__ import annotations

from dataclasses import dataclass

from .config import Settings
from .runtime_caches import RuntimeCaches
from .runtime_configs import RuntimeConfigs
from .security.secretbox import SecretBox
from .store.db import Database
from .store.state import SharedState


@dataclass(slots=True)
class Services:
    settings: Settings
    db: Database
    state: SharedState
    configs: RuntimeConfigs
    caches: RuntimeCaches  # every cache of database rows this process keeps (a sync reloads them all)
    secrets: SecretBox
    jwt_secret: str
