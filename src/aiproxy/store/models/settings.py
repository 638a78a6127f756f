"""Runtime configuration rows and the client filter tables."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, String, Text
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
    __tablename__ = "client_types"
    __table_args__ = NO_ID_REUSE

    name: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(255), default="")
    ua_pattern: Mapped[str] = mapped_column(String(512))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    is_builtin: Mapped[bool] = mapped_column(Boolean, default=False)


class ClientFilterRule(IdMixin, TimestampMixin, Base):
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
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
