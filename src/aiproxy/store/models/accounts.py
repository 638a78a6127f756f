"""Upstream accounts, their groups and the outbound proxies they use."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import NO_ID_REUSE, Base, BigId, IdMixin, TimestampMixin, UTCDateTime, utcnow


class ProxyConfig(IdMixin, TimestampMixin, Base):
    __tablename__ = "proxy_configs"
    __table_args__ = NO_ID_REUSE

    name: Mapped[str] = mapped_column(String(100))
    type: Mapped[str] = mapped_column(String(16), default="http")
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    username: Mapped[str] = mapped_column(String(255), default="")
    password_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    remark: Mapped[str] = mapped_column(String(255), default="")


class AccountGroup(IdMixin, TimestampMixin, Base):
    __tablename__ = "account_groups"
    __table_args__ = NO_ID_REUSE

    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(String(255), default="")
    platform: Mapped[str] = mapped_column(String(32), default="")
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)


class AccountGroupMember(Base):
    __tablename__ = "account_group_members"

    group_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("account_groups.id", ondelete="CASCADE"), primary_key=True
    )
    account_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Account(IdMixin, TimestampMixin, Base):
    __tablename__ = "accounts"

    name: Mapped[str] = mapped_column(String(100))
    type: Mapped[str] = mapped_column(String(32), index=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # valid | rate_limited | overloaded | unavailable | invalid | token_expired (store/accounts.py);
    # timed marks end at the *_until times (an admin's `unavailable` keeps its end in overloaded_until).
    status: Mapped[str] = mapped_column(String(16), default="valid", index=True)
    status_reason: Mapped[str] = mapped_column(Text, default="")
    rate_limited_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    overloaded_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    priority: Mapped[int] = mapped_column(Integer, default=50)
    weight: Mapped[int] = mapped_column(Integer, default=100)
    max_concurrency: Mapped[int] = mapped_column(Integer, default=0)
    # API keys, OAuth tokens, session keys: one JSON object, encrypted at rest.
    credentials_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    base_url: Mapped[str] = mapped_column(String(512), default="")
    region: Mapped[str] = mapped_column(String(64), default="")
    api_version: Mapped[str] = mapped_column(String(32), default="")
    deployment: Mapped[str] = mapped_column(String(128), default="")
    organization_id: Mapped[str] = mapped_column(String(128), default="")
    model_mapping: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    allowed_models: Mapped[str] = mapped_column(Text, default="")
    proxy_config_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("proxy_configs.id", ondelete="SET NULL"), nullable=True
    )
    token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    remark: Mapped[str] = mapped_column(String(255), default="")
    request_count: Mapped[int] = mapped_column(BigInteger, default=0)
    used_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    used_cost: Mapped[float] = mapped_column(Float, default=0.0)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (Index("ix_accounts_type_enabled_status", "type", "enabled", "status"), NO_ID_REUSE)
