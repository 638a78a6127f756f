"""How stored rows are shown through the API (one function per resource)."""

from __future__ import annotations

from typing import Any

from ..store.models import AIModel, ApiKey, OperationLog, Package, User, UserPackage
from ..store.packages import remaining


def user_view(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "email": user.email,
        "role": user.role,
        "status": user.status,
        "balance": user.balance,
        "price_rate": user.price_rate,
        "max_concurrency": user.max_concurrency,
        "account_group_id": user.account_group_id,
        "last_login_at": user.last_login_at,
        "created_at": user.created_at,
        "updated_at": user.updated_at,
    }


def api_key_view(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "user_id": key.user_id,
        "name": key.name,
        "key_prefix": key.key_prefix,
        "status": key.status,
        "allowed_platforms": key.allowed_platforms,
        "allowed_models": key.allowed_models,
        "allowed_clients": key.allowed_clients,
        "rate_limit": key.rate_limit,
        "daily_limit": key.daily_limit,
        "monthly_quota": key.monthly_quota,
        "price_rate": key.price_rate,
        "account_group_id": key.account_group_id,
        "user_package_id": key.user_package_id,
        "used_tokens": key.used_tokens,
        "used_cost": key.used_cost,
        "request_count": key.request_count,
        "last_used_at": key.last_used_at,
        "expires_at": key.expires_at,
        "created_at": key.created_at,
        "updated_at": key.updated_at,
    }


def model_view(model: AIModel) -> dict[str, Any]:
    return {
        "id": model.id,
        "model_id": model.model_id,
        "model_name": model.model_name,
        "platform": model.platform,
        "mode": model.mode,
        "input_price": model.input_price,
        "output_price": model.output_price,
        "cache_creation_price": model.cache_creation_price,
        "cache_read_price": model.cache_read_price,
        "cache_creation_1h_price": model.cache_creation_1h_price,
        "price_tiers": model.price_tiers,
        "max_input_tokens": model.max_input_tokens,
        "max_output_tokens": model.max_output_tokens,
        "aliases": model.aliases,
        "enabled": model.enabled,
        "is_default": model.is_default,
        "sort_order": model.sort_order,
        "created_at": model.created_at,
        "updated_at": model.updated_at,
    }


def public_model_view(model: AIModel) -> dict[str, Any]:
    """The user-facing model list: the model id and what it costs."""
    return {
        "id": model.model_id,
        "name": model.model_name,
        "platform": model.platform,
        "input_price": model.input_price,
        "output_price": model.output_price,
        "cache_creation_price": model.cache_creation_price,
        "cache_read_price": model.cache_read_price,
    }


def package_view(package: Package) -> dict[str, Any]:
    return {
        "id": package.id,
        "name": package.name,
        "description": package.description,
        "price": package.price,
        "token_quota": package.token_quota,
        "cost_quota": package.cost_quota,
        "valid_days": package.valid_days,
        "allowed_platforms": package.allowed_platforms,
        "allowed_models": package.allowed_models,
        "allowed_clients": package.allowed_clients,
        "rate_limit": package.rate_limit,
        "daily_limit": package.daily_limit,
        "status": package.status,
        "sort_order": package.sort_order,
        "created_at": package.created_at,
        "updated_at": package.updated_at,
    }


def _tidy_dollars(amount: float | None) -> float | None:
    """A dollar difference without float noise (0.3 - 0.1 shown as 0.2)."""
    return None if amount is None else round(amount, 9)


def user_package_view(holding: UserPackage) -> dict[str, Any]:
    """A package a user holds; `remaining_*` is null where the quota is 0 (no cap)."""
    return {
        "id": holding.id,
        "user_id": holding.user_id,
        "package_id": holding.package_id,
        "package_name": holding.package_name,
        "token_quota": holding.token_quota,
        "used_tokens": holding.used_tokens,
        "remaining_tokens": remaining(holding.token_quota, holding.used_tokens),
        "cost_quota": holding.cost_quota,
        "used_cost": holding.used_cost,
        "remaining_cost": _tidy_dollars(remaining(holding.cost_quota, holding.used_cost)),
        "daily_limit": holding.daily_limit,
        "start_time": holding.start_time,
        "end_time": holding.end_time,
        "status": holding.status,
        "created_at": holding.created_at,
    }


def operation_log_view(entry: OperationLog, *, with_body: bool = False) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": entry.id,
        "user_id": entry.user_id,
        "username": entry.username,
        "action": entry.action,
        "resource": entry.resource,
        "resource_id": entry.resource_id,
        "description": entry.description,
        "method": entry.method,
        "path": entry.path,
        "status_code": entry.status_code,
        "ip": entry.ip,
        "user_agent": entry.user_agent,
        "created_at": entry.created_at,
    }
    if with_body:
        view["request_body"] = entry.request_body
    return view
