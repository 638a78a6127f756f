"""The model catalogue (prices), global model mappings, and the upstream error rules."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Boolean, Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import NO_ID_REUSE, Base, IdMixin, TimestampMixin


class AIModel(IdMixin, TimestampMixin, Base):
    """A model with its list prices in USD per 1M tokens."""

    __tablename__ = "ai_models"
    __table_args__ = NO_ID_REUSE

    model_id: Mapped[str] = mapped_column(String(128), unique=True)
    model_name: Mapped[str] = mapped_column(String(128))
    platform: Mapped[str] = mapped_column(String(32), index=True)
    mode: Mapped[str] = mapped_column(String(16), default="chat")
    input_price: Mapped[float] = mapped_column(Float, default=0.0)
    output_price: Mapped[float] = mapped_column(Float, default=0.0)
    cache_creation_price: Mapped[float] = mapped_column(Float, default=0.0)
    cache_read_price: Mapped[float] = mapped_column(Float, default=0.0)
    cache_creation_1h_price: Mapped[float] = mapped_column(Float, default=0.0)
    # Long-context tiers, e.g. {"above_200k": {"input": 6.0, "output": 22.5, ...}}.
    price_tiers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    max_input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    max_output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    aliases: Mapped[str] = mapped_column(Text, default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    sort_order: Mapped[int] = mapped_column(Integer, default=0)


class ModelMapping(IdMixin, TimestampMixin, Base):
    """A global rewrite of the requested model name (e.g. an alias to a dated id)."""

    __tablename__ = "model_mappings"
    __table_args__ = NO_ID_REUSE

    source_model: Mapped[str] = mapped_column(String(128), index=True)
    target_model: Mapped[str] = mapped_column(String(128))
    platform: Mapped[str] = mapped_column(String(32), default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    description: Mapped[str] = mapped_column(String(255), default="")


class ErrorRule(IdMixin, TimestampMixin, Base):
    """Upstream error (status + keyword) → the status the account is moved to."""

    __tablename__ = "error_rules"
    __table_args__ = NO_ID_REUSE

    name: Mapped[str] = mapped_column(String(100), default="")
    status_code: Mapped[int] = mapped_column(Integer, default=0)
    keyword: Mapped[str] = mapped_column(String(255), default="")
    target_status: Mapped[str] = mapped_column(String(16))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    cooldown_seconds: Mapped[int] = mapped_column(Integer, default=0)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    description: Mapped[str] = mapped_column(String(255), default="")


class ErrorMessage(IdMixin, TimestampMixin, Base):
    """A client-facing message that replaces an upstream error text for a status code."""

    __tablename__ = "error_messages"
    __table_args__ = NO_ID_REUSE

    status_code: Mapped[int] = mapped_column(Integer, index=True)
    keyword: Mapped[str] = mapped_column(String(255), default="")
    message: Mapped[str] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    description: Mapped[str] = mapped_column(String(255), default="")
