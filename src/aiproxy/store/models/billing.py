"""Packages sold to users and the packages users hold."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import NO_ID_REUSE, Base, BigId, IdMixin, TimestampMixin, UTCDateTime


class Package(IdMixin, TimestampMixin, Base):
    __tablename__ = "packages"
    __table_args__ = NO_ID_REUSE

    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    price: Mapped[float] = mapped_column(Float, default=0.0)
    token_quota: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_quota: Mapped[float] = mapped_column(Float, default=0.0)
    valid_days: Mapped[int] = mapped_column(Integer, default=30)
    allowed_platforms: Mapped[str] = mapped_column(String(255), default="")
    allowed_models: Mapped[str] = mapped_column(Text, default="")
    # Client types (as in a key's allowed_clients), comma-separated; "" = any client.
    allowed_clients: Mapped[str] = mapped_column(String(255), default="", server_default="")
    rate_limit: Mapped[int] = mapped_column(Integer, default=0)
    daily_limit: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="active")
    sort_order: Mapped[int] = mapped_column(Integer, default=0)


class UserPackage(IdMixin, TimestampMixin, Base):
    __tablename__ = "user_packages"

    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"))
    package_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("packages.id", ondelete="SET NULL"), nullable=True
    )
    package_name: Mapped[str] = mapped_column(String(100), default="")
    token_quota: Mapped[int] = mapped_column(BigInteger, default=0)
    used_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_quota: Mapped[float] = mapped_column(Float, default=0.0)
    used_cost: Mapped[float] = mapped_column(Float, default=0.0)
    daily_limit: Mapped[int] = mapped_column(Integer, default=0)
    start_time: Mapped[datetime] = mapped_column(UTCDateTime())
    end_time: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16), default="active")

    __table_args__ = (Index("ix_user_packages_user_status", "user_id", "status"), NO_ID_REUSE)
