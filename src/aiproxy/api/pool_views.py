"""How account-pool rows are shown through the API. Secrets never leave in clear."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..security.secretbox import SecretBox, SecretBoxError
from ..store.accounts import ACCOUNT_TYPES, CREDENTIAL_FIELDS, decrypt_credentials, mask_secret
from ..store.models import Account, AccountGroup, ErrorMessage, ErrorRule, ProxyConfig


def _masked_credentials(account: Account, box: SecretBox) -> tuple[dict[str, str], bool]:
    """({field: masked value}, readable); unreadable when the secret key has changed."""
    try:
        plain = decrypt_credentials(box, account.credentials_encrypted)
    except (SecretBoxError, ValueError):
        return {}, False
    return {k: mask_secret(str(v)) for k, v in plain.items() if k in CREDENTIAL_FIELDS and v}, True


def account_view(account: Account, box: SecretBox, group_ids: Iterable[int] = ()) -> dict[str, Any]:
    kind = ACCOUNT_TYPES.get(account.type)
    credentials, readable = _masked_credentials(account, box)
    return {
        "id": account.id,
        "name": account.name,
        "type": account.type,
        "family": kind.family if kind else "",
        "enabled": account.enabled,
        "status": account.status,
        "status_reason": account.status_reason,
        "rate_limited_until": account.rate_limited_until,
        "overloaded_until": account.overloaded_until,
        "priority": account.priority,
        "weight": account.weight,
        "max_concurrency": account.max_concurrency,
        "credentials": credentials,
        "has_credentials": {name: name in credentials for name in CREDENTIAL_FIELDS},
        "credentials_readable": readable,
        "endpoint": account.base_url,
        "base_url": account.base_url,
        "effective_base_url": account.base_url or (kind.default_base_url if kind else ""),
        "region": account.region,
        "api_version": account.api_version,
        "deployment": account.deployment,
        "organization_id": account.organization_id,
        "model_mapping": account.model_mapping or {},
        "allowed_models": account.allowed_models,
        "proxy_config_id": account.proxy_config_id,
        "group_ids": sorted(group_ids),
        "token_expires_at": account.token_expires_at,
        "extra": account.extra or {},
        "remark": account.remark,
        "request_count": account.request_count,
        "used_tokens": account.used_tokens,
        "used_cost": account.used_cost,
        "last_used_at": account.last_used_at,
        "last_error": account.last_error,
        "last_error_at": account.last_error_at,
        "created_at": account.created_at,
        "updated_at": account.updated_at,
    }


def account_brief(account: Account) -> dict[str, Any]:
    """An account as listed inside its group."""
    return {
        "id": account.id,
        "name": account.name,
        "type": account.type,
        "enabled": account.enabled,
        "status": account.status,
        "priority": account.priority,
        "weight": account.weight,
    }


def group_view(group: AccountGroup, account_count: int = 0) -> dict[str, Any]:
    return {
        "id": group.id,
        "name": group.name,
        "description": group.description,
        "platform": group.platform,
        "is_default": group.is_default,
        "account_count": account_count,
        "created_at": group.created_at,
        "updated_at": group.updated_at,
    }


def proxy_view(proxy: ProxyConfig) -> dict[str, Any]:
    return {
        "id": proxy.id,
        "name": proxy.name,
        "type": proxy.type,
        "host": proxy.host,
        "port": proxy.port,
        "username": proxy.username,
        "has_password": bool(proxy.password_encrypted),
        "enabled": proxy.enabled,
        "is_default": proxy.is_default,
        "remark": proxy.remark,
        "created_at": proxy.created_at,
        "updated_at": proxy.updated_at,
    }


def error_rule_view(rule: ErrorRule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "name": rule.name,
        "status_code": rule.status_code,
        "keyword": rule.keyword,
        "target_status": rule.target_status,
        "priority": rule.priority,
        "cooldown_seconds": rule.cooldown_seconds,
        "enabled": rule.enabled,
        "is_default": rule.is_default,
        "description": rule.description,
        "created_at": rule.created_at,
        "updated_at": rule.updated_at,
    }


def error_message_view(message: ErrorMessage) -> dict[str, Any]:
    return {
        "id": message.id,
        "status_code": message.status_code,
        "keyword": message.keyword,
        "message": message.message,
        "enabled": message.enabled,
        "description": message.description,
        "created_at": message.created_at,
        "updated_at": message.updated_at,
    }
