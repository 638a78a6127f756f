"""Keyword-only persistence functions for the client filter: its settings, client types, rules.

Patterns are checked by the caller before they get here (the API refuses a bad regex with 400),
so what is stored always compiles. Every change is announced by the caller after its commit with
`bump_pool_version`: the gateway rebuilds its compiled filter when the pool version moves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..errors import BadRequest, NotFound
from .models import ClientFilterConfig, ClientFilterRule, ClientType

TYPE_FIELDS = frozenset({"name", "display_name", "description", "ua_pattern", "path_pattern", "enabled"})
RULE_FIELDS = frozenset(
    {"client_type_id", "rule_type", "field_name", "pattern", "required", "enabled", "description"}
)
CONFIG_FIELDS = frozenset({"filter_enabled", "filter_mode", "allowed_clients", "default_allow"})

TYPE_NOT_FOUND = "客户端类型不存在"
RULE_NOT_FOUND = "过滤规则不存在"
NAME_TAKEN = "客户端类型名称已存在"
FIELD_NEEDED = "field_name: required for header and body rules"
UNKNOWN_CLIENTS = "allowed_clients: 未知的客户端类型: {names}"


async def get_config(session: AsyncSession) -> ClientFilterConfig:
    """The one settings row, created (filter off) when there is none yet; not committed."""
    config = await session.scalar(select(ClientFilterConfig).order_by(ClientFilterConfig.id).limit(1))
    if config is None:
        config = ClientFilterConfig(filter_enabled=False, filter_mode="simple", allowed_clients=[])
        session.add(config)
        await session.flush()
    return config


async def update_config(session: AsyncSession, *, changes: Mapping[str, Any]) -> ClientFilterConfig:
    """Set the given settings (None = unchanged); allowed clients must be known type names."""
    config = await get_config(session)
    allowed = changes.get("allowed_clients")
    if allowed is not None:
        await check_client_names(session, names=allowed)
    for name, value in changes.items():
        if name not in CONFIG_FIELDS:
            raise TypeError(f"not a client filter setting: {name}")
        if value is not None:
            setattr(config, name, list(value) if name == "allowed_clients" else value)
    await session.flush()
    return config


async def check_client_names(session: AsyncSession, *, names: Sequence[str]) -> None:
    known = set(await session.scalars(select(ClientType.name).where(ClientType.name.in_(list(names)))))
    unknown = [name for name in names if name not in known]
    if unknown:
        raise BadRequest(UNKNOWN_CLIENTS.format(names=", ".join(unknown)))


async def check_client_list(session: AsyncSession, value: str | None) -> None:
    """A key's or package's comma-separated `allowed_clients` names known client types (400 if not):
    a misspelt name would otherwise refuse every request of the key."""
    if value:
        await check_client_names(session, names=[name for name in value.split(",") if name])


# --- client types ----------------------------------------------------------------------------


async def list_types(session: AsyncSession) -> list[ClientType]:
    return list(await session.scalars(select(ClientType).order_by(ClientType.id)))


async def get_type(session: AsyncSession, type_id: int) -> ClientType:
    client_type = await session.get(ClientType, type_id)
    if client_type is None:
        raise NotFound(TYPE_NOT_FOUND)
    return client_type


async def _check_name_free(session: AsyncSession, name: str, *, own_id: int | None = None) -> None:
    query = select(func.count()).select_from(ClientType).where(ClientType.name == name)
    if own_id is not None:
        query = query.where(ClientType.id != own_id)
    if await session.scalar(query):
        raise BadRequest(NAME_TAKEN)


async def create_type(session: AsyncSession, *, fields: Mapping[str, Any]) -> ClientType:
    await _check_name_free(session, fields["name"])
    client_type = ClientType(is_builtin=False, description="", path_pattern="", enabled=True)
    _apply(client_type, fields, TYPE_FIELDS)
    session.add(client_type)
    await session.flush()
    return client_type


async def update_type(session: AsyncSession, *, type_id: int, changes: Mapping[str, Any]) -> ClientType:
    client_type = await get_type(session, type_id)
    if changes.get("name") is not None:
        await _check_name_free(session, changes["name"], own_id=type_id)
    _apply(client_type, changes, TYPE_FIELDS)
    await session.flush()
    return client_type


async def delete_type(session: AsyncSession, *, type_id: int) -> None:
    """Deletes the type and its rules (explicitly: SQLite does not cascade by itself)."""
    client_type = await get_type(session, type_id)
    for rule in await session.scalars(
        select(ClientFilterRule).where(ClientFilterRule.client_type_id == type_id)
    ):
        await session.delete(rule)
    await session.delete(client_type)
    await session.flush()


# --- rules -----------------------------------------------------------------------------------


async def list_rules(session: AsyncSession, *, client_type_id: int | None = None) -> list[ClientFilterRule]:
    query = select(ClientFilterRule).order_by(ClientFilterRule.client_type_id, ClientFilterRule.id)
    if client_type_id is not None:
        query = query.where(ClientFilterRule.client_type_id == client_type_id)
    return list(await session.scalars(query))


async def get_rule(session: AsyncSession, rule_id: int) -> ClientFilterRule:
    rule = await session.get(ClientFilterRule, rule_id)
    if rule is None:
        raise NotFound(RULE_NOT_FOUND)
    return rule


async def create_rule(session: AsyncSession, *, fields: Mapping[str, Any]) -> ClientFilterRule:
    await get_type(session, fields["client_type_id"])
    rule = ClientFilterRule(required=True, enabled=True, description="", field_name="")
    _apply(rule, fields, RULE_FIELDS)
    session.add(rule)
    await session.flush()
    return rule


async def update_rule(session: AsyncSession, *, rule_id: int, changes: Mapping[str, Any]) -> ClientFilterRule:
    rule = await get_rule(session, rule_id)
    if changes.get("client_type_id") is not None:
        await get_type(session, changes["client_type_id"])
    _apply(rule, changes, RULE_FIELDS)
    if rule.rule_type != "system" and not rule.field_name:
        raise BadRequest(FIELD_NEEDED)
    await session.flush()
    return rule


async def delete_rule(session: AsyncSession, *, rule_id: int) -> None:
    await session.delete(await get_rule(session, rule_id))
    await session.flush()


def _apply(row: ClientType | ClientFilterRule, fields: Mapping[str, Any], allowed: frozenset[str]) -> None:
    for name, value in fields.items():
        if name not in allowed:
            raise TypeError(f"not a writable field: {name}")
        if value is not None:
            setattr(row, name, value)


async def load_all(
    session: AsyncSession,
) -> tuple[ClientFilterConfig | None, list[ClientType], list[ClientFilterRule]]:
    """Everything the gateway compiles: the settings (None: never saved), every type and rule."""
    config = await session.scalar(select(ClientFilterConfig).order_by(ClientFilterConfig.id).limit(1))
    return config, await list_types(session), await list_rules(session)
