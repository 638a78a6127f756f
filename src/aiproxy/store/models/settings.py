"""Runtime configuration rows and the client filter tables."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from .base import NO_ID_REUSE, Base, BigId, IdMixin, TimestampMixin, UTCDateTime, utcnow


class SystemConfig(IdMixin, Base):
    """One runtime setting; `value` holds the JSON encoding of the typed value."""

    __tablename__ = "system_configs"
    __table_args__ = NO_ID_REUSE

    category: Mapped[str] = mapped_column(String(32), index=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class ClientType(IdMixin, TimestampMixin, Base):
    """A kind of client (Claude Code, an SDK, …) as the client filter identifies it."""

    __tablename__ = "client_types"
    __table_args__ = NO_ID_REUSE

    name: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(255), default="")
    ua_pattern: Mapped[str] = mapped_column(String(512))
    # The paths this client calls (regex searched in the request path); "" = any path.
    path_pattern: Mapped[str] = mapped_column(String(512), default="", server_default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    is_builtin: Mapped[bool] = mapped_column(Boolean, default=False)


class ClientFilterRule(IdMixin, TimestampMixin, Base):
    """A header, body-field or system-prompt rule a client type must meet in strict mode."""

    __tablename__ = "client_filter_rules"
    __table_args__ = NO_ID_REUSE

    client_type_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("client_types.id", ondelete="CASCADE"), index=True
    )
    rule_type: Mapped[str] = mapped_column(String(16))
    field_name: Mapped[str] = mapped_column(String(128))
    pattern: Mapped[str] = mapped_column(String(512))
    required: Mapped[bool] = mapped_column(Boolean, default=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    description: Mapped[str] = mapped_column(String(255), default="")


class ClientFilterConfig(IdMixin, Base):
    """A single row: whether the client filter is on, its mode, the allowed client names."""

    __tablename__ = "client_filter_config"
    __table_args__ = NO_ID_REUSE

    filter_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    filter_mode: Mapped[str] = mapped_column(String(16), default="simple")
    allowed_clients: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # Whether a client that matches no enabled client type may call (while the filter is on).
    default_allow: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
