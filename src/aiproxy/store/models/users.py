"""Users and their API keys."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import NO_ID_REUSE, Base, BigId, IdMixin, TimestampMixin, UTCDateTime


class User(IdMixin, TimestampMixin, Base):
    __tablename__ = "users"
    __table_args__ = NO_ID_REUSE

    username: Mapped[str] = mapped_column(String(50), unique=True)
    email: Mapped[str] = mapped_column(String(255), default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="user")
    status: Mapped[str] = mapped_column(String(16), default="active")
    balance: Mapped[float] = mapped_column(Float, default=0.0)
    price_rate: Mapped[float] = mapped_column(Float, default=1.0)
    max_concurrency: Mapped[int] = mapped_column(Integer, default=10)
    # Bumped on password change: tokens carrying an older version are refused.
    token_version: Mapped[int] = mapped_column(Integer, default=0)
    account_group_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("account_groups.id", ondelete="SET NULL"), nullable=True
    )
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ApiKey(IdMixin, TimestampMixin, Base):
    __tablename__ = "api_keys"

    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The full key, encrypted at rest, so its owner can reveal it again.
    key_encrypted: Mapped[str] = mapped_column(Text)
    key_prefix: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(16), default="active")
    allowed_platforms: Mapped[str] = mapped_column(String(255), default="all")
    allowed_models: Mapped[str] = mapped_column(Text, default="")
    allowed_clients: Mapped[str] = mapped_column(String(255), default="")
    rate_limit: Mapped[int] = mapped_column(Integer, default=60)
    daily_limit: Mapped[int] = mapped_column(Integer, default=0)
    monthly_quota: Mapped[float] = mapped_column(Float, default=0.0)
    price_rate: Mapped[float] = mapped_column(Float, default=1.0)
    account_group_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("account_groups.id", ondelete="SET NULL"), nullable=True
    )
    # The user package this key is bound to (None: unbound); unbound when that package is deleted.
    user_package_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("user_packages.id", ondelete="SET NULL"), nullable=True, index=True
    )
    used_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    used_cost: Mapped[float] = mapped_column(Float, default=0.0)
    request_count: Mapped[int] = mapped_column(BigInteger, default=0)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (Index("ix_api_keys_status", "status"), NO_ID_REUSE)

    @property
    def enabled(self) -> bool:
        return self.status == "active"


__all__ = ["ApiKey", "User"]
