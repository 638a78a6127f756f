"""ORM models. Importing this package registers every table on `Base.metadata`."""

from .accounts import Account, AccountGroup, AccountGroupMember, ProxyConfig
from .base import Base, utcnow
from .billing import Package, UserPackage
from .catalog import AIModel, ErrorMessage, ErrorRule, ModelMapping
from .settings import ClientFilterConfig, ClientFilterRule, ClientType, SystemConfig
from .usage import DailyUsage, OperationLog, RequestLog, UsageRecord
from .users import ApiKey, User

__all__ = [
    "AIModel",
    "Account",
    "AccountGroup",
    "AccountGroupMember",
    "ApiKey",
    "Base",
    "ClientFilterConfig",
    "ClientFilterRule",
    "ClientType",
    "DailyUsage",
    "ErrorMessage",
    "ErrorRule",
    "ModelMapping",
    "OperationLog",
    "Package",
    "ProxyConfig",
    "RequestLog",
    "SystemConfig",
    "UsageRecord",
    "User",
    "UserPackage",
    "utcnow",
]
