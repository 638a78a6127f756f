"""What every relayed request cost: request logs, per-request usage and daily roll-ups."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Boolean, Date, Float, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .base import NO_ID_REUSE, Base, BigId, IdMixin, UTCDateTime, utcnow

# Log rows reference users, keys and accounts by id without foreign keys: deleting a
# user or an account must not rewrite (or block on) millions of historical rows.


class RequestLog(IdMixin, Base):
    __tablename__ = "request_logs"

    request_id: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    api_key_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    account_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    platform: Mapped[str] = mapped_column(String(32), default="")
    model: Mapped[str] = mapped_column(String(128), default="")
    upstream_model: Mapped[str] = mapped_column(String(128), default="")
    method: Mapped[str] = mapped_column(String(8), default="POST")
    path: Mapped[str] = mapped_column(String(255), default="")
    stream: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default="success")
    status_code: Mapped[int] = mapped_column(Integer, default=200)
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cache_creation_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cache_read_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    total_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost: Mapped[float] = mapped_column(Float, default=0.0)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    first_byte_ms: Mapped[int] = mapped_column(Integer, default=0)
    retries: Mapped[int] = mapped_column(Integer, default=0)
    client_ip: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(512), default="")
    client_type: Mapped[str] = mapped_column(String(64), default="")
    session_hash: Mapped[str] = mapped_column(String(64), default="")
    # Comma-separated markers such as "unknown_model", "truncated".
    flags: Mapped[str] = mapped_column(String(255), default="")
    error_message: Mapped[str] = mapped_column(Text, default="")
    request_headers: Mapped[str] = mapped_column(Text, default="")
    request_body: Mapped[str] = mapped_column(Text, default="")
    response_body: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)

    __table_args__ = (
        Index("ix_request_logs_user_time", "user_id", "created_at"),
        Index("ix_request_logs_key_time", "api_key_id", "created_at"),
        Index("ix_request_logs_account_time", "account_id", "created_at"),
        NO_ID_REUSE,
    )


class UsageRecord(IdMixin, Base):
    __tablename__ = "usage_records"

    request_id: Mapped[str] = mapped_column(String(64), default="")
    user_id: Mapped[int] = mapped_column(BigId)
    api_key_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    account_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    user_package_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    platform: Mapped[str] = mapped_column(String(32), default="")
    model: Mapped[str] = mapped_column(String(128), default="")
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cache_creation_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cache_read_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    total_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    input_cost: Mapped[float] = mapped_column(Float, default=0.0)
    output_cost: Mapped[float] = mapped_column(Float, default=0.0)
    cache_creation_cost: Mapped[float] = mapped_column(Float, default=0.0)
    cache_read_cost: Mapped[float] = mapped_column(Float, default=0.0)
    price_rate: Mapped[float] = mapped_column(Float, default=1.0)
    # Billed cost: list cost × effective price rate.
    cost: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)

    __table_args__ = (
        Index("ix_usage_records_user_time", "user_id", "created_at"),
        Index("ix_usage_records_key_time", "api_key_id", "created_at"),
        Index("ix_usage_records_account_time", "account_id", "created_at"),
        NO_ID_REUSE,
    )


class DailyUsage(IdMixin, Base):
    """One row per (day, user, key, model): the roll-up the usage pages read."""

    __tablename__ = "daily_usage"

    day: Mapped[date] = mapped_column(Date)
    user_id: Mapped[int] = mapped_column(BigId)
    api_key_id: Mapped[int] = mapped_column(BigId, default=0)
    model: Mapped[str] = mapped_column(String(128), default="")
    platform: Mapped[str] = mapped_column(String(32), default="")
    request_count: Mapped[int] = mapped_column(BigInteger, default=0)
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cache_creation_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cache_read_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    total_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost: Mapped[float] = mapped_column(Float, default=0.0)

    __table_args__ = (
        UniqueConstraint("day", "user_id", "api_key_id", "model", name="uq_daily_usage_day_user_key_model"),
        Index("ix_daily_usage_user_day", "user_id", "day"),
        NO_ID_REUSE,
    )


class OperationLog(IdMixin, Base):
    """An admin write, recorded automatically with secrets masked."""

    __tablename__ = "operation_logs"

    user_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    username: Mapped[str] = mapped_column(String(50), default="")
    action: Mapped[str] = mapped_column(String(32))
    resource: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str] = mapped_column(String(64), default="")
    description: Mapped[str] = mapped_column(String(512), default="")
    method: Mapped[str] = mapped_column(String(8), default="")
    path: Mapped[str] = mapped_column(String(255), default="")
    status_code: Mapped[int] = mapped_column(Integer, default=200)
    ip: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(512), default="")
    request_body: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)

    __table_args__ = (
        Index("ix_operation_logs_user_time", "user_id", "created_at"),
        Index("ix_operation_logs_resource_time", "resource", "created_at"),
        NO_ID_REUSE,
    )
